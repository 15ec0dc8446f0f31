"""The flows on an S3 store (moto's server on 127.0.0.1): the inbox (a folder on the
ingesting host) ingested into the bucket, and train-headlines (train, evaluate, promote,
sample) through Prefect, every artifact in the bucket."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from charlm.demo_corpus import make_corpus
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


def test_the_inbox_is_ingested_into_the_bucket(s3_store_url, tmp_path) -> None:
    inbox = Store(s3_store_url).inbox
    inbox.mkdir(parents=True)
    rows = make_corpus(80, np.random.default_rng(1))
    pl.DataFrame(rows, schema=["publish_date", "headline_text"],
                 orient="row").write_csv(inbox / "a.csv")
    run = ingest_headlines(storage=s3_store_url)
    [dataset] = run.published
    assert Store(s3_store_url).resolve("datasets", "latest") == dataset
    assert not list(inbox.glob("*.csv"))
    assert (inbox / "processed" / dataset / "a.csv").exists()
