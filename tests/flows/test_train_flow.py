"""The train-headlines flow: first model promoted, no new data -> nothing, force, no regression."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from prefect import task

import tasks.champion
from charlm.kernels import KernelStatus
from flows.train import EVALUATION_KEY, train_headlines
from storage import Store
from storage.layout import DriftTrendFiles
from tasks.callbacks import PROGRESS_KEY
from tasks.evaluate import evaluate_model
from tasks.report import REPORT_KEY

pytestmark = pytest.mark.usefixtures("prefect_api")


def models(storage: str) -> list[str]:
    return [m["id"] for m in Store(storage).versions("models")]


def test_no_dataset_yet_is_not_an_error(tmp_path, tiny):
    state = train_headlines(network=tiny[0], training=tiny[1], storage=str(tmp_path / "s"),
                            return_state=True)
    assert state.is_completed() and state.result().action == "skipped"


def test_first_run_trains_promotes_and_reports(trained, read_artifact):
    run = trained.first_run
    store = Store(trained.storage)
    assert run.action == "promoted"
    assert run.champion_id == run.challenger_id == store.resolve("models", "champion")
    manifest = store.manifest("models", run.challenger_id)
    assert manifest["parents"]["datasets"] == [trained.dataset_id]
    assert run.champion_bpc is None and run.challenger_bpc > 0
    # the sample headlines are a generation version of the challenger
    generation = store.manifest("generations", run.generation_id)
    assert generation["parents"]["models"] == [run.challenger_id]
    assert generation["summary"]["headlines"] == 3
    progress = read_artifact(PROGRESS_KEY, trained.first_run_id)
    assert progress is not None and progress.data == 100.0
    evaluation = read_artifact(EVALUATION_KEY, trained.first_run_id)
    assert evaluation is not None and "novel" in evaluation.data.lower()
    # The report links the drift trend republished after the run; this retrain is its point.
    trend = store.manifest("evaluations", run.trend_id)
    assert trend["params"]["drift"] == "trend" and trend["summary"]["points"] == 1
    report = read_artifact(REPORT_KEY, trained.first_run_id).data
    assert "## The champion's drift" in report and run.trend_id in report
    plot = DriftTrendFiles.at(store.path("evaluations", run.trend_id)).plot
    assert plot.as_uri() in report and f"| retrain | `{trained.dataset_id}` |" in report
    # which recurrent path trained it, as training recorded it
    path = KernelStatus.from_dict(manifest["summary"]["recurrent"])
    assert f"| recurrent path | {path.describe()} |" in report


def test_a_run_without_the_kernels_warns_in_its_log_and_its_report(trained, tiny, read_artifact,
                                                                   flow_run_logs, monkeypatch):
    monkeypatch.setenv("CHARLM_KERNELS", "0")
    state = train_headlines(network=tiny[0], training=tiny[1], force=True, samples=0,
                            storage=trained.storage, return_state=True)
    run_id = state.state_details.flow_run_id
    said = "turned off by CHARLM_KERNELS=0 (about 2x slower)"
    warnings = flow_run_logs(run_id, logging.WARNING)
    assert any(m.startswith("recurrent path: keras, ") and said in m for m in warnings), warnings
    logs = flow_run_logs(run_id)
    path_line = next(i for i, m in enumerate(logs) if m.startswith("recurrent path: "))
    assert path_line < next(i for i, m in enumerate(logs) if m.startswith("epoch 1:"))
    report = read_artifact(REPORT_KEY, run_id).data
    assert f": {said} |" in report and "| recurrent path | keras, " in report


def test_rerun_without_new_headlines_does_nothing(trained, tiny, read_artifact, flow_run_logs):
    before = models(trained.storage)
    state = train_headlines(network=tiny[0], training=tiny[1],
                            storage=trained.storage, return_state=True)
    assert state.is_completed()
    run = state.result()
    assert run.action == "skipped" and run.challenger_id is None
    assert models(trained.storage) == before
    logs = flow_run_logs(state.state_details.flow_run_id)
    assert any(m.startswith("no new headlines") for m in logs), logs
    assert "No new headlines" in read_artifact(REPORT_KEY).data


def test_force_trains_again(trained, tiny, read_artifact):
    before = models(trained.storage)
    run = train_headlines(network=tiny[0], training=tiny[1], force=True, samples=0,
                          storage=trained.storage)
    assert run.action in ("promoted", "kept")
    assert run.challenger_id not in before and models(trained.storage) == [
        *before, run.challenger_id]
    assert run.champion_bpc is not None  # compared with the champion on the same test split
    assert run.generation_id is None
    report = read_artifact(REPORT_KEY).data
    assert "| | challenger | champion |" in report and run.challenger_id in report


def test_worse_challenger_is_not_promoted(trained, tiny, read_artifact, monkeypatch):
    store = Store(trained.storage)
    champion = store.resolve("models", "champion")

    @task(name="evaluate-model")
    def champion_always_better(storage, model, dataset, split):
        # The champion scores (fakely) far better than any tiny model can.
        outcome = evaluate_model.fn(storage, model, dataset, split)
        if outcome.model_id == champion:
            outcome = dataclasses.replace(outcome, metrics={**outcome.metrics,
                                                            "bits_per_char": 0.01})
        return outcome

    monkeypatch.setattr(tasks.champion, "evaluate_model", champion_always_better)
    run = train_headlines(network=tiny[0], training=tiny[1], force=True, samples=0,
                          storage=trained.storage)
    assert run.action == "kept"
    assert run.champion_bpc == 0.01 and run.challenger_bpc > 0.01
    assert store.resolve("models", "champion") == champion == run.champion_id
    assert run.challenger_id in models(trained.storage)
    assert "champion stays" in read_artifact(REPORT_KEY).data


def test_runs_warm_from_the_champion_by_default(trained, tiny, read_artifact, flow_run_logs):
    store = Store(trained.storage)
    champion = store.resolve("models", "champion")
    training = dataclasses.replace(tiny[1], warm_learning_rate=1e-3)  # not the cold peak
    state = train_headlines(network=tiny[0], training=training, force=True, samples=0,
                            storage=trained.storage, return_state=True)
    run = state.result()
    assert run.started_from == champion
    manifest = store.manifest("models", run.challenger_id)
    assert manifest["parents"]["models"] == [champion]  # the chain: `charlm versions` shows it
    # the warm peak learning rate was used, and the run's own record says where it started
    assert manifest["params"]["train"]["learning_rate"] == 1e-3 != tiny[1].learning_rate
    assert manifest["summary"]["started_from"] == champion
    report = read_artifact(REPORT_KEY).data
    assert f"| started from | `{champion}` (warm) |" in report
    assert f"**Start:** warm from champion {champion}." in report
    logs = flow_run_logs(state.state_details.flow_run_id)
    assert f"challenger starts warm from champion {champion}" in logs
    if run.action == "promoted":
        reason = store.alias_history("models", "champion")[-1]["reason"]
        assert reason.endswith(f"warm-started from {champion}")


def test_weekly_cold_run_and_a_changed_network_train_from_scratch(trained, tiny, read_artifact,
                                                                 flow_run_logs):
    store = Store(trained.storage)
    champion = store.resolve("models", "champion")
    run = train_headlines(network=tiny[0], training=tiny[1], force=True, samples=0,
                          warm_start="none", storage=trained.storage)
    assert run.started_from is None
    assert "models" not in store.manifest("models", run.challenger_id)["parents"]
    report = read_artifact(REPORT_KEY).data
    assert "| started from | random weights (cold) |" in report
    assert "**Start:** from scratch: warm_start is none." in report

    champion = store.resolve("models", "champion")
    wider = dataclasses.replace(tiny[0], hidden=tiny[0].hidden + 4)
    state = train_headlines(network=wider, training=tiny[1], force=True, samples=0,
                            storage=trained.storage, return_state=True)
    assert state.result().started_from is None
    logs = flow_run_logs(state.state_details.flow_run_id)
    assert (f"challenger starts from scratch: the configured network differs from champion "
            f"{champion}'s (hidden {tiny[0].hidden} -> {wider.hidden})") in logs, logs
