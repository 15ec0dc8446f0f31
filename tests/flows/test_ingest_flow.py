"""The ingest-headlines flow: inbox claim, publish, archive, `charlm.dataset.published`;
two runs at once ingest each inbox file once; stale claims are taken over."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prefect import task

import flows.ingest
import tasks.drift
from charlm.demo_corpus import make_corpus
from flows.ingest import ingest_headlines
from storage import Store
from tasks.drift import DRIFT_KEY
from tasks.events import DATASET_PUBLISHED
from tasks.ingest import ingest_csvs

pytestmark = pytest.mark.usefixtures("prefect_api")


def write_csv(path: Path, rows: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(rows, np.random.default_rng(seed))
    pl.DataFrame(corpus, schema=["publish_date", "headline_text"], orient="row").write_csv(path)
    return path


def inbox_csvs(storage: str) -> list[str]:
    return sorted(p.name for p in (Path(storage) / "inbox").glob("*.csv"))


def test_inbox_is_ingested_archived_and_announced(tmp_path, read_events):
    storage = str(tmp_path / "store")
    inbox = Path(storage) / "inbox"  # a directory store's inbox is this folder, as ever
    write_csv(inbox / "a.csv", 50, 1)
    write_csv(inbox / "b.csv", 50, 2)

    run = ingest_headlines(storage=storage)
    [dataset] = run.published
    assert Store(storage).resolve("datasets", "latest") == dataset == run.dataset_id
    assert run.new_rows > 0
    assert inbox_csvs(storage) == []
    assert sorted(p.name for p in (inbox / "processed" / dataset).iterdir()) == ["a.csv",
                                                                                  "b.csv"]
    assert run.event_id is not None
    [event] = [e for e in read_events(DATASET_PUBLISHED, f"charlm.dataset.{dataset}")
               if e["id"] == run.event_id]
    assert event["resource"]["prefect.resource.id"] == f"charlm.dataset.{dataset}"
    assert event["payload"]["dataset_id"] == dataset
    assert event["payload"]["sources"] == ["a.csv", "b.csv"]

    # The same headlines again: nothing new, nothing published, no event, inbox still emptied.
    write_csv(inbox / "a.csv", 50, 1)
    again = ingest_headlines(storage=storage)
    assert again.published == [] and again.event_id is None
    assert again.dataset_id == dataset
    assert inbox_csvs(storage) == []
    assert (inbox / "processed" / "unchanged" / "a.csv").exists()


def test_empty_inbox_is_a_quiet_no_op(tmp_path):
    run = ingest_headlines(storage=str(tmp_path / "store"))
    assert run.dataset_id is None and run.files == [] and run.published == []


def test_explicit_paths_are_not_moved(tmp_path):
    storage = str(tmp_path / "store")
    csv = write_csv(tmp_path / "elsewhere" / "c.csv", 40, 3)
    run = ingest_headlines(paths=[str(csv)], storage=storage)
    assert len(run.published) == 1 and run.archived == []
    assert csv.exists()


def test_unreadable_file_is_set_aside_and_fails_the_run(tmp_path):
    storage = str(tmp_path / "store")
    inbox = Path(storage) / "inbox"  # a directory store's inbox is this folder, as ever
    write_csv(inbox / "good.csv", 40, 4)
    (inbox / "bad.csv").write_text("no,headline,columns\n1,2,3\n")

    state = ingest_headlines(storage=storage, return_state=True)
    assert state.is_failed()
    assert "bad.csv" in state.message
    assert len(Store(storage).versions("datasets")) == 1  # the good file was still published
    assert inbox_csvs(storage) == []
    assert (inbox / "processed" / "rejected" / "bad.csv").exists()


def test_drift_is_recorded_and_a_failure_never_fails_the_run(tmp_path, publish_model,
                                                             read_artifact, flow_run_logs,
                                                             monkeypatch):
    storage = str(tmp_path / "store")
    first = ingest_headlines(paths=[str(write_csv(tmp_path / "a.csv", 120, 1))],
                             storage=storage)
    assert first.drift == []  # no champion yet
    champion = publish_model(storage, first.dataset_id)
    run = ingest_headlines(paths=[str(write_csv(tmp_path / "b.csv", 80, 2))], storage=storage)
    [dataset] = run.published
    [drift] = run.drift
    manifest = Store(storage).manifest("evaluations", drift)
    assert manifest["parents"] == {"datasets": [dataset], "models": [champion]}
    assert manifest["summary"]["new_rows"] == run.new_rows
    artifact = read_artifact(DRIFT_KEY)
    assert artifact is not None and f"{run.new_rows} new headlines" in artifact.data
    assert champion in artifact.data

    @task(name="score-drift")
    def broken(storage, dataset_id, model_id):
        raise RuntimeError("the scorer exploded\nsecond line")

    monkeypatch.setattr(tasks.drift, "score_drift", broken)
    state = ingest_headlines(paths=[str(write_csv(tmp_path / "c.csv", 80, 3))],
                             storage=storage, return_state=True)
    assert state.is_completed()
    again = state.result()
    assert len(again.published) == 1 and again.drift == [] and again.event_id is not None
    logs = flow_run_logs(state.state_details.flow_run_id)
    assert (f"charlm: drift not recorded for dataset {again.published[0]}: the scorer exploded"
            in logs)


def headlines_of(storage: str, dataset: str) -> list[str]:
    from storage.datasets import read_headlines

    frame = read_headlines(Store(storage).path("datasets", dataset)).collect()
    return sorted(frame["headline"].to_list())


@pytest.mark.parametrize("kind", ["directory", "memory"])
def test_two_inbox_runs_at_once_ingest_and_archive_each_file_once(kind, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    storage = str(tmp_path / "store") if kind == "directory" else \
        f"memory://ingest-{uuid.uuid4().hex}"
    names = ["a.csv", "b.csv", "c.csv"]
    drops = [write_csv(tmp_path / "drop" / name, 40, 10 + i) for i, name in enumerate(names)]
    for name, path in zip(names, drops):
        Store(storage).inbox.put(name, path)
    start = threading.Barrier(2)
    states: list = [None, None]

    def run(k: int) -> None:
        start.wait()
        states[k] = ingest_headlines(storage=storage, drift=False, return_state=True)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = [state.result() for state in states]
    # Each file was read by one run only, and archived once (no a.1.csv copy).
    assert sorted(Path(f).name for r in runs for f in r.files) == names
    inbox = Store(storage).inbox
    assert sorted(key.rsplit("/", 1)[1] for key in inbox.archived()) == names
    assert inbox.waiting() == [] and Store(storage).backend.list("inbox/.claims/") == []
    # Every row once in latest: what one ingestion of the three files gives.
    reference = str(tmp_path / "reference")
    ingest_csvs.fn(reference, [str(p) for p in drops])
    latest = Store(storage).resolve("datasets", "latest")
    assert headlines_of(storage, latest) == headlines_of(reference, "latest")


def test_a_stale_claim_is_taken_over_and_a_live_one_left_alone(tmp_path):
    storage = str(tmp_path / "store")
    inbox = Store(storage).inbox
    write_csv(Path(storage) / "inbox" / "a.csv", 40, 5)
    live = inbox.claim("a.csv", "a run still at work")
    assert live is not None
    run = ingest_headlines(storage=storage, drift=False)
    assert run.files == [] and inbox.waiting() == ["a.csv"]  # left to its holder

    then = time.time() - 2 * 3600  # the holder was killed two hours ago
    os.utime(Path(storage) / "inbox" / ".claims" / "a.csv", (then, then))
    run = ingest_headlines(storage=storage, drift=False)
    [dataset] = run.published
    assert inbox.waiting() == []
    assert (Path(storage) / "inbox" / "processed" / dataset / "a.csv").exists()


def test_a_failed_run_lets_its_claims_go(tmp_path, monkeypatch):
    storage = str(tmp_path / "store")
    write_csv(Path(storage) / "inbox" / "a.csv", 40, 6)

    @task(name="ingest-csv")
    def broken(storage, paths, cleaning=None, origins=None):
        raise RuntimeError("the store went away")

    monkeypatch.setattr(flows.ingest, "ingest_csvs", broken)
    state = ingest_headlines(storage=storage, drift=False, return_state=True)
    assert state.is_failed() and "the store went away" in state.message
    assert Store(storage).inbox.waiting() == ["a.csv"]
    monkeypatch.undo()
    run = ingest_headlines(storage=storage, drift=False)  # not blocked for the lease
    assert len(run.published) == 1 and Store(storage).inbox.waiting() == []
