"""The generate-headlines flow: shards as mapped tasks, one generation version; Dask too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charlm.config import SampleConfig
from flows.generate import generate_headlines
from flows.runners import dask_runner, task_runner_from_env
from storage import Store
from tasks.generate import plan_shards, rotate
from tasks.report import GENERATION_KEY


@pytest.mark.parametrize(("n", "size", "expected"), [
    (1, 1000, [1]), (1000, 1000, [1000]), (1001, 1000, [501, 500]), (7, 3, [3, 2, 2]),
])
def test_plan_shards(n, size, expected):
    assert plan_shards(n, size) == expected


def test_rotate_keeps_the_global_prefix_cycle():
    assert rotate(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert rotate([], 3) == []


def test_task_runner_from_env(monkeypatch):
    pytest.importorskip("prefect_dask")  # the optional `dask` extra
    monkeypatch.setenv("CHARLM_TASK_RUNNER", "dask")
    assert type(task_runner_from_env()).__name__ == "DaskTaskRunner"
    monkeypatch.setenv("CHARLM_TASK_RUNNER", "threads")
    with pytest.raises(ValueError, match="CHARLM_TASK_RUNNER"):
        task_runner_from_env()


def check_generation(storage: str, run, n: int, prefixes: list[str]) -> list[dict]:
    store = Store(storage)
    [manifest] = [m for m in store.versions("generations") if m["id"] == run.generation_id]
    assert manifest["params"]["shards"] == run.shards
    # bytes split on "\n" only: an untrained model's text may hold \r or \x0c, which text
    # mode and splitlines() take for line breaks
    lines = Path(run.path).read_bytes().decode().split("\n")[:-1]
    assert len(lines) == run.headlines == n
    rows = [json.loads(line) for line in Path(run.path).with_name("headlines.jsonl").open()]
    assert [r["text"] for r in rows] == lines
    if prefixes:
        # row i starts with prefixes[i % len], as in one unsharded job
        assert [r["prefix"] for r in rows] == [prefixes[i % len(prefixes)] for i in range(n)]
        assert all(r["text"].startswith(r["prefix"]) for r in rows)
    # shard files cleaned up
    assert not [i for i in store.backend.list(".work/") if i.key.startswith(".work/generate-")]
    return rows


@pytest.mark.usefixtures("prefect_api")
def test_sharded_job_publishes_one_version(trained, read_artifact):
    before = len(Store(trained.storage).versions("generations"))
    config = SampleConfig(seed=3, max_new_chars=40)
    run = generate_headlines(model="champion", n=7, sampling=config, prefixes=["A", "B"],
                             shard_size=3, storage=trained.storage)
    assert run.shards == 3
    assert run.model_id == Store(trained.storage).resolve("models", "champion")
    assert len(Store(trained.storage).versions("generations")) == before + 1
    rows = check_generation(trained.storage, run, 7, ["A", "B"])
    assert sorted({r["shard"] for r in rows}) == [0, 1, 2]
    table = read_artifact(GENERATION_KEY)
    assert table is not None and run.generation_id in table.description
    assert len(json.loads(table.data)) == 7


@pytest.mark.usefixtures("prefect_api")
def test_shards_on_a_dask_cluster(trained):
    pytest.importorskip("prefect_dask")
    on_dask = generate_headlines.with_options(
        task_runner=dask_runner(workers=1, processes=False))
    run = on_dask(model="champion", n=4, sampling=SampleConfig(max_new_chars=30), shard_size=2,
                  storage=trained.storage)
    assert run.shards == 2
    check_generation(trained.storage, run, 4, [])
