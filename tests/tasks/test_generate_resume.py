"""A killed batch generation resumes its finished shards on another machine.

The store is obstore's in-memory one (one per process, so every "host" of a test sees it);
each host is a cache folder of its own ($CHARLM_CACHE). Generation is killed by an exception
injected into sampling after some shards; the rerun on a second host must draw only the
shards that were not finished and publish exactly what an uninterrupted run publishes.
"""

from __future__ import annotations

import secrets

import numpy as np
import polars as pl
import pytest

import tasks.generate
from charlm.config import SampleConfig
from charlm.demo_corpus import make_corpus
from storage import Store
from tasks.generate import SHARD_SEED_STRIDE, generate_headlines, read_generated
from tasks.ingest import ingest_csvs

SAMPLING = SampleConfig(seed=5, max_new_chars=16)


class Killed(Exception):
    """Stands for the process dying in the middle of a shard."""


@pytest.fixture
def model_store(tmp_path, monkeypatch, publish_model) -> tuple[str, str]:
    """(url, model id): an in-memory store holding a tiny untrained model."""
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "host1"))
    url = f"memory://generate-{secrets.token_hex(4)}"
    csv = tmp_path / "headlines.csv"
    pl.DataFrame(make_corpus(60, np.random.default_rng(0)),
                 schema=["publish_date", "headline_text"], orient="row").write_csv(csv)
    dataset = ingest_csvs.fn(url, [str(csv)]).dataset_id
    return url, publish_model(url, dataset, champion=False)


@pytest.fixture
def draws(monkeypatch) -> dict:
    """The seeds sampling was called with (`seeds`); `kill_at`: the call that raises."""
    seen: dict = {"seeds": [], "kill_at": None}
    real = tasks.generate.generate

    def counting(net, n, config, prefixes=None):
        seen["seeds"].append(config.seed)
        if len(seen["seeds"]) == seen["kill_at"]:
            raise Killed("killed in the middle of a shard")
        return real(net, n, config, prefixes)

    monkeypatch.setattr(tasks.generate, "generate", counting)
    return seen


def test_a_killed_job_resumes_its_finished_shards_on_another_host(model_store, draws,
                                                                  tmp_path, monkeypatch):
    url, model = model_store
    job = {"n": 7, "sampling": SAMPLING, "prefixes": ["A", "B"], "shard_size": 2}
    shard_seed = [SAMPLING.seed + k * SHARD_SEED_STRIDE for k in range(4)]

    draws["kill_at"] = 3  # host 1 finishes shards 0 and 1, dies in shard 2
    with pytest.raises(Killed):
        generate_headlines(url, model, **job)
    assert draws["seeds"] == shard_seed[:3]
    assert Store(url).versions("generations") == []

    # Host 2: an empty cache of its own; the work directory comes from the store.
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "host2"))
    draws.update(seeds=[], kill_at=None)
    resumed = generate_headlines(url, model, **job)
    assert draws["seeds"] == shard_seed[2:]  # shards 0 and 1 were not drawn again
    assert resumed.shards == 4 and resumed.headlines == 7
    assert Store(url).backend.list(".work/") == []  # the job's work directory is gone

    # Host 3, uninterrupted: the same job from scratch gives the very same headlines.
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "host3"))
    draws["seeds"] = []
    whole = generate_headlines(url, model, **job)
    assert draws["seeds"] == shard_seed
    assert whole.generation_id != resumed.generation_id
    assert read_generated(resumed) == read_generated(whole)
    assert Store(url).verify() == []


def test_the_first_host_resumes_from_the_store_not_its_own_older_copy(model_store, draws,
                                                                        tmp_path, monkeypatch):
    """Host 1 is killed after shard 0; host 2 gets further (shard 1) and is killed too;
    back on host 1, whose local copy holds shard 0 only, the rerun keeps both."""
    url, model = model_store
    job = {"n": 4, "sampling": SAMPLING, "shard_size": 1}
    draws["kill_at"] = 2
    with pytest.raises(Killed):
        generate_headlines(url, model, **job)
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "host2"))
    draws.update(seeds=[], kill_at=2)
    with pytest.raises(Killed):
        generate_headlines(url, model, **job)
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "host1"))
    draws.update(seeds=[], kill_at=None)
    outcome = generate_headlines(url, model, **job)
    assert draws["seeds"] == [SAMPLING.seed + k * SHARD_SEED_STRIDE for k in (2, 3)]
    assert [r["shard"] for r in read_generated(outcome)] == [0, 1, 2, 3]
