"""The flows on an S3 store (moto's server on 127.0.0.1), every artifact in the bucket:
train-headlines (train, evaluate, promote, sample), the inbox (a CSV put into the bucket's
inbox/ prefix is ingested and archived once), generate-headlines and compare-architectures.
Tiny settings: each runs in seconds."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from charlm.config import SampleConfig
from charlm.demo_corpus import make_corpus
from flows.compare import compare_architectures
from flows.generate import generate_headlines
from flows.ingest import ingest_headlines
from flows.train import train_headlines
from storage import Store
from tasks.ingest import ingest_csvs

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def test_train_headlines_flow_on_s3(s3_store_url, tmp_path, tiny) -> None:
    csv = tmp_path / "headlines.csv"
    rows = make_corpus(600, np.random.default_rng(0))
    pl.DataFrame(rows, schema=["publish_date", "headline_text"], orient="row").write_csv(csv)
    dataset_id = ingest_csvs.fn(s3_store_url, [str(csv)]).dataset_id
    run = train_headlines(network=tiny[0], training=tiny[1], samples=3, storage=s3_store_url)
    store = Store(s3_store_url)
    assert run.action == "promoted"
    assert store.resolve("models", "champion") == run.challenger_id
    assert store.manifest("models", run.challenger_id)["parents"]["datasets"] == [dataset_id]
    assert store.manifest("generations", run.generation_id)["summary"]["headlines"] == 3
    assert store.alias_history("models", "champion")[-1]["id"] == run.challenger_id
    assert store.verify() == []
    again = train_headlines(network=tiny[0], training=tiny[1], samples=3, storage=s3_store_url)
    assert again.action == "skipped"  # no new headlines: nothing retrained


def csv_bytes(rows: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame(make_corpus(rows, np.random.default_rng(seed)),
                 schema=["publish_date", "headline_text"], orient="row").write_csv(buffer)
    return buffer.getvalue()


def test_a_csv_put_into_the_buckets_inbox_is_ingested_once(s3_store_url) -> None:
    store = Store(s3_store_url)
    store.backend.put("inbox/a.csv", csv_bytes(80, 1))  # as `aws s3 cp` from anywhere would
    run = ingest_headlines(storage=s3_store_url, drift=False)
    [dataset] = run.published
    assert store.resolve("datasets", "latest") == dataset
    assert run.files == [f"{s3_store_url}/inbox/a.csv"]
    assert store.inbox.archived() == [f"inbox/processed/{dataset}/a.csv"]
    assert store.backend.get(f"inbox/processed/{dataset}/a.csv")[0] == csv_bytes(80, 1)
    assert store.inbox.waiting() == [] and store.backend.list("inbox/.claims/") == []
    [source] = store.manifest("datasets", dataset)["params"]["sources"]
    assert source["path"] == f"{s3_store_url}/inbox/a.csv"
    assert ingest_headlines(storage=s3_store_url, drift=False).files == []  # nothing left


@pytest.fixture
def s3_model(s3_store_url, publish_model) -> tuple[str, str]:
    """(store URL, dataset id) of a bucket holding a small dataset and an untrained tiny
    champion: generation needs a model, not a good one."""
    Store(s3_store_url).inbox.put("a.csv", csv_bytes(200, 2))
    dataset = ingest_headlines(storage=s3_store_url, drift=False).dataset_id
    publish_model(s3_store_url, dataset)
    return s3_store_url, dataset


def test_generate_headlines_flow_on_s3(s3_model) -> None:
    url, _ = s3_model
    run = generate_headlines(model="champion", n=5, shard_size=2, storage=url,
                             sampling=SampleConfig(seed=4, max_new_chars=12))
    store = Store(url)
    assert run.shards == 3 and run.headlines == 5
    manifest = store.manifest("generations", run.generation_id)
    assert manifest["params"]["shards"] == 3
    assert manifest["parents"]["models"] == [store.resolve("models", "champion")]
    assert len(Path(run.path).read_bytes().decode().split("\n")[:-1]) == 5
    assert store.backend.list(".work/") == []  # the shards' work directory is gone
    assert store.verify() == []


def test_compare_architectures_flow_on_s3(s3_model, tiny) -> None:
    url, dataset = s3_model
    network, training = tiny
    outcome = compare_architectures(cells=["rnn", "gru"], network=network,
                                    training=replace(training, max_minutes=0.02),
                                    samples=2, storage=url)
    store = Store(url)
    manifest = store.manifest("evaluations", outcome.evaluation_id)
    assert manifest["parents"]["datasets"] == [dataset]
    assert sorted(manifest["parents"]["models"]) == sorted(r["model"] for r in outcome.rows)
    assert [r["cell"] for r in outcome.rows] == ["rnn", "gru"]
    assert Path(outcome.plot).read_bytes()[:4] == b"\x89PNG"
    assert store.resolve("evaluations", "comparison") == outcome.evaluation_id
    assert store.backend.list(".work/") == []  # the trainings' work directories are gone
    assert store.verify() == []
