"""Fixtures for the flow tests: a throwaway Prefect API and a store with a trained champion.

Flows run in-process against `prefect_test_harness` (a temporary SQLite server), started once
per session. Prefect's home and result storage go to a temporary folder: set in the
environment before anything imports prefect (tests/sandbox.py, which tests/conftest.py
imports first), and again as temporary settings for the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sandbox import PREFECT_TMP

from charlm.config import ModelConfig, TrainConfig

# Tiny everything: the machine running the tests has 2 shared cores.
TINY_NETWORK = ModelConfig(cell="gru", hidden=16, depth=1, embedding=8, dropout=0.0)
TINY_TRAINING = TrainConfig(epochs=1, max_minutes=0.2, batch_size=32)
CORPUS_ROWS = 300


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect server for the whole session (flows report runs and artifacts)."""
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates={PREFECT_HOME: PREFECT_TMP / "home",
                                     PREFECT_LOCAL_STORAGE_PATH: PREFECT_TMP / "results"}):
        with prefect_test_harness(server_startup_timeout=180):
            yield


@pytest.fixture
def tiny() -> tuple[ModelConfig, TrainConfig]:
    """(network, training) configs small enough to train in seconds."""
    return TINY_NETWORK, TINY_TRAINING


@pytest.fixture
def read_artifact():
    """read_artifact(key, flow_run_id=None): the newest version of an artifact on the test
    server (of that flow run when given), or None."""
    return _read_artifact


@pytest.fixture
def read_events():
    """read_events(name, resource_id=None): events of that name stored by the test server."""
    return _read_events


@pytest.fixture
def flow_run_logs():
    """flow_run_logs(flow_run_id): the messages a flow run logged to the test server."""
    return _flow_run_logs


@dataclass(frozen=True)
class Trained:
    """A store with one dataset and a champion trained on it by the train flow."""

    storage: str
    dataset_id: str
    first_run: object  # flows.train.TrainRun of the run that made the champion
    first_run_id: object  # its flow run's id: other tests' runs publish the same artifact keys


@pytest.fixture(scope="session")
def trained(prefect_api: None, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    import numpy as np
    import polars as pl

    from charlm.demo_corpus import make_corpus
    from flows.train import train_headlines
    from tasks.ingest import ingest_csvs

    root = tmp_path_factory.mktemp("trained")
    storage, csv = str(root / "store"), root / "headlines.csv"
    rows = make_corpus(CORPUS_ROWS, np.random.default_rng(0))
    pl.DataFrame(rows, schema=["publish_date", "headline_text"], orient="row").write_csv(csv)
    dataset_id = ingest_csvs.fn(storage, [str(csv)]).dataset_id
    state = train_headlines(network=TINY_NETWORK, training=TINY_TRAINING, samples=3,
                            storage=storage, return_state=True)
    return Trained(storage, dataset_id, state.result(), state.state_details.flow_run_id)


def _read_artifact(key: str, flow_run_id=None):
    """The newest version of the artifact `key` on the test server (of flow run `flow_run_id`
    when given: the session's other runs publish the same keys), or None if there is none."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    wanted = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
    if flow_run_id is not None:
        wanted.flow_run_id = ArtifactFilterFlowRunId(any_=[flow_run_id])
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=wanted, sort=ArtifactSort.CREATED_DESC,
                                      limit=1)
    return found[0] if found else None


def _read_events(name: str, resource_id: str | None = None, timeout: float = 20.0) -> list[dict]:
    """Events called `name` (about `resource_id`, when given) stored by the test server; waits
    for the asynchronous pipeline until there is one. Give `resource_id` to wait for a
    particular event: other tests' events of the same name are already there."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    wanted: dict = {"event": {"name": [name]}}
    if resource_id is not None:
        wanted["resource"] = {"id": [resource_id]}
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            response = client.request("POST", "/events/filter", json={
                "filter": wanted, "limit": 50})
        events = response.json()["events"]
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def _flow_run_logs(flow_run_id, level: int = 0) -> list[str]:
    """Messages the flow run (and its task runs) logged to the test server, at `level` or
    above (a logging level)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[flow_run_id])), limit=200)
    return [log.message for log in logs if log.level >= level]
