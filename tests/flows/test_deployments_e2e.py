"""End to end: a real Prefect server, prefect.yaml deployed to its two process pools, workers.

Exercises scripts/server.sh, scripts/deploy.sh and scripts/worker.sh as documented, then:
nightly training completes and crowns a champion; a CSV dropped into the inbox and ingested
by the ingest deployment emits charlm.dataset.published, whose trigger starts a training run;
the ingest-feed/poll deployment fetches a feed of 300 new headlines from a local server,
publishes one dataset version and its trigger starts one training run that completes; a
further nightly run with no new data trains nothing; and no flow run's output carries
TensorFlow's native start-up chatter. The server's scheduler is off so the
deployments' own schedules cannot start runs in the middle of the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from feedserver import FeedServer, conditional, rss, rss_item

from charlm.demo_corpus import make_corpus
from storage import Store
from tasks.native_logs import is_native_log_line

ROOT = Path(__file__).resolve().parents[2]
TINY = {  # deployment parameters: JSON, validated by the flow into its config dataclasses
    "network": {"cell": "gru", "hidden": 16, "depth": 1, "embedding": 8, "dropout": 0.0},
    "training": {"epochs": 1, "max_minutes": 0.2, "batch_size": 32},
    "samples": 3,
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_csv(path: Path, rows: int, seed: int) -> None:
    """Write atomically (tmp name, then rename): an inbox scan takes any *.csv it sees."""
    path.parent.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(rows, np.random.default_rng(seed))
    tmp = path.with_suffix(".part")
    pl.DataFrame(corpus, schema=["publish_date", "headline_text"], orient="row").write_csv(tmp)
    tmp.replace(path)


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def stop(proc: subprocess.Popen) -> None:
    """Terminate, then kill, the process group the test started (by its leader's PID)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def test_deployed_pipeline(tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    storage = tmp_path / "store"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT=str(Path(sys.executable).with_name("prefect")),  # this venv's CLI
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_PORT=str(port),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",
        CHARLM_PROJECT_DIR=str(ROOT),
        CHARLM_STORAGE=str(storage),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    procs: list[subprocess.Popen] = []
    feeds = FeedServer()  # the feeds the ingest-feed deployment polls, on 127.0.0.1

    def start(name: str, *args: str) -> subprocess.Popen:
        out = (logs / f"{name}.log").open("w")
        proc = subprocess.Popen(["bash", str(ROOT / "scripts" / f"{name}.sh"), *args],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: stop() ends all of it
        procs.append(proc)
        return proc

    def prefect(*args: str, timeout: float = 240) -> str:
        done = subprocess.run([env["PREFECT"], *args], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-4000:]}"
        return done.stdout

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        server = start("server")
        wait_for("the Prefect server", lambda: healthy() or server.poll() is not None, 120)
        assert server.poll() is None, (logs / "server.log").read_text()[-4000:]

        deployed = subprocess.run(["bash", str(ROOT / "scripts" / "deploy.sh")], cwd=tmp_path,
                                  env=env, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=240)
        assert deployed.returncode == 0, deployed.stdout[-4000:]
        for name in ("train-headlines/nightly", "ingest-headlines/inbox", "ingest-feed/poll",
                     "generate-headlines/batch"):
            assert name in deployed.stdout, deployed.stdout[-4000:]

        with api_client(api) as client:
            # Triggered runs use the deployment's default parameters: make them tiny too.
            from prefect.client.schemas.actions import DeploymentUpdate

            nightly = client.read_deployment_by_name("train-headlines/nightly")
            client.update_deployment(nightly.id, DeploymentUpdate(parameters=TINY))
            assert nightly.global_concurrency_limit.limit == 1
            assert [s.schedule.timezone for s in nightly.schedules] == ["Australia/Sydney"] * 2
            # nightly warm (the flow's default), weekly from scratch
            assert sorted(str(s.parameters) for s in nightly.schedules) == [
                "{'warm_start': 'none', 'force': True}", "{}"]
            poll = client.read_deployment_by_name("ingest-feed/poll")
            assert poll.global_concurrency_limit.limit == 1
            assert [s.schedule.interval.total_seconds() for s in poll.schedules] == [600]
            defaults = poll.parameter_openapi_schema["properties"]["urls"]["default"]
            assert defaults == ["https://www.abc.net.au/news/feed/51120/rss.xml",
                                "https://www.abc.net.au/news/feed/45910/rss.xml"]

        start("worker", "--limit", "1")
        write_csv(tmp_path / "first.csv", 300, 0)
        from tasks.ingest import ingest_csvs

        first_dataset = ingest_csvs.fn(str(storage), [str(tmp_path / "first.csv")]).dataset_id

        # 1. Nightly training (explicit parameters), watched to the end.
        out = prefect("deployment", "run", "train-headlines/nightly", "--watch",
                      "--params", json.dumps(TINY))
        assert "Completed" in out, out
        store = Store(storage)
        champion = store.resolve("models", "champion")
        assert store.manifest("models", champion)["parents"]["datasets"] == [first_dataset]

        # 2. New headlines in the inbox -> ingest deployment -> event -> triggered training.
        def training_runs() -> list:
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

            with api_client(api) as client:
                return client.read_flow_runs(deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[nightly.id])))

        earlier = {r.id for r in training_runs()}
        write_csv(Path(storage) / "inbox" / "second.csv", 120, 1)
        out = prefect("deployment", "run", "ingest-headlines/inbox", "--watch")
        assert "Completed" in out, out
        second_dataset = store.resolve("datasets", "latest")
        assert second_dataset != first_dataset
        assert store.inbox.waiting() == []
        # The champion was scored on the new headlines before the event started training.
        drift = [m for m in store.versions("evaluations") if m["params"].get("drift") == "batch"]
        assert [(m["parents"]["datasets"], m["parents"]["models"]) for m in drift] == [
            ([second_dataset], [champion])]

        triggered = wait_for("a training run started by the trigger",
                             lambda: [r for r in training_runs() if r.id not in earlier], 90,
                             every=2)
        assert len(triggered) == 1, triggered
        assert triggered[0].created_by is not None
        assert triggered[0].created_by.type == "AUTOMATION", triggered[0].created_by
        run_id = triggered[0].id
        final = wait_for("the triggered training run to finish",
                         lambda: next((r for r in training_runs() if r.id == run_id
                                       and r.state and r.state.is_final()), None), 200, every=3)
        assert final.state.is_completed(), final.state
        trained_on_new = [m for m in store.versions("models")
                          if m["parents"]["datasets"] == [second_dataset]]
        assert len(trained_on_new) == 1
        trend = store.manifest("evaluations", "drift-trend")  # republished by that run
        assert trend["summary"]["points"] >= 3  # two retrains and the new batch

        # 3. A feed with 300 new headlines -> ingest-feed/poll -> one dataset version -> event
        #    -> one triggered training run, which completes.
        feeds.serve("/just-in.xml", conditional(rss(
            [rss_item(f"Feed headline {n}: council's $1.{n}m plan", guid=f"urn:e2e:{n}")
             for n in range(300)]), etag='"e2e-1"'))
        earlier = {r.id for r in training_runs()}
        out = prefect("deployment", "run", "ingest-feed/poll", "--watch", "--params",
                      json.dumps({"urls": [feeds.url("/just-in.xml")]}))
        assert "Completed" in out, out
        feed_dataset = store.resolve("datasets", "latest")
        assert [m["id"] for m in store.versions("datasets")][-2:] == [second_dataset,
                                                                       feed_dataset]
        assert store.manifest("datasets", feed_dataset)["summary"]["new_rows"] == 300
        assert len(feeds.hits("/just-in.xml")) == 1
        triggered = wait_for("a training run started by the feed's dataset",
                             lambda: [r for r in training_runs() if r.id not in earlier], 90,
                             every=2)
        assert len(triggered) == 1, triggered
        run_id = triggered[0].id
        final = wait_for("the feed-triggered training run to finish",
                         lambda: next((r for r in training_runs() if r.id == run_id
                                       and r.state and r.state.is_final()), None), 200, every=3)
        assert final.state.is_completed(), final.state
        assert [m for m in store.versions("models")
                if m["parents"]["datasets"] == [feed_dataset]]

        # 4. Nightly again with no new data: completes without training.
        models_before = len(store.versions("models"))
        out = prefect("deployment", "run", "train-headlines/nightly", "--watch",
                      "--params", json.dumps(TINY))
        assert "Completed" in out, out
        assert len(store.versions("models")) == models_before

        # 5. The flow runs' output (the worker prints it) holds no TensorFlow chatter.
        worker_log = (logs / "worker.log").read_text()
        assert "Beginning flow run" in worker_log
        chatter = [line for line in worker_log.splitlines() if is_native_log_line(line.encode())]
        assert chatter == []
    except BaseException:
        for log in sorted(logs.iterdir()):
            print(f"----- {log.name} (tail) -----\n{log.read_text()[-6000:]}")
        raise
    finally:
        for proc in reversed(procs):  # worker first, then server
            stop(proc)
        feeds.close()


class api_client:  # noqa: N801 (used like a function, in `with`)
    """A sync Prefect client for `api`, whatever server the test session is configured for."""

    def __init__(self, api: str) -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self._settings = temporary_settings(updates={PREFECT_API_URL: api})

    def __enter__(self):
        from prefect.client.orchestration import get_client

        self._settings.__enter__()
        self._client = get_client(sync_client=True)
        return self._client.__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            self._client.__exit__(*exc)
        finally:
            self._settings.__exit__(*exc)
