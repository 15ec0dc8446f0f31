"""Drift monitoring: how surprised the champion is by each new batch of headlines.

`record_drift(storage, dataset_id)` is the operation ingestion calls (`charlm ingest`, the
`ingest-headlines` flow) right after it published a dataset version, before any
retraining: the champion, if there is one, is scored on just the rows that version added
to its predecessor (ingestion.plan.added_rows): exact bits per char of the new batch, the
share of its words never seen in the champion's training split, and the most frequent of
those new words. The measurement is published as an evaluation version (parents: the
dataset and the champion; storage.layout.EvaluationFiles: metrics.json, report.md) and,
inside a Prefect run, as the `dataset-drift` markdown artifact. It never breaks an
ingestion: any failure is logged in one line and the dataset stays published.

`publish_drift_trend` (`charlm drift`, and the `train-headlines` flow after each run) draws
the champion's bits per char over time from the store alone: on each new batch at arrival
(the drift evaluations), and on the test split after each retrain (the evaluations
`tasks.champion.train_challenger` publishes, and the champion alias history telling which
model held the title after the retrain). It is published as an evaluation version
(storage.layout.DriftTrendFiles).

Markers: drift evaluations have params {"drift": "batch"} and trends {"drift": "trend"}
(`DRIFT`, `BATCH`, `TREND`), mirrored in their summaries; the aliases `drift` and
`drift-trend` name the newest of each. A trend records the evaluations it was computed from
in its params rather than as parents, so that it does not pin every dataset version ever
made against gc; its trend.json holds every value it shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.quality import unseen_words
from charlm.report import drift_markdown, drift_trend_table, plot_drift_trend
from ingestion.plan import added_rows
from storage import Store, one_line
from storage.datasets import read_headlines
from storage.layout import DriftTrendFiles, EvaluationFiles
from tasks.common import (
    current_champion,
    json_safe,
    model_files,
    open_store,
    run_logger,
    run_task,
    training_dataset,
    training_index,
)
from tasks.presets import CHAMPION
from tasks.report import publish_markdown

DRIFT = "drift"  # params key (and summary key) marking drift evaluations
BATCH, TREND = "batch", "trend"  # its values: one new batch, a trend across versions
DRIFT_ALIAS, TREND_ALIAS = "drift", "drift-trend"  # evaluation aliases: the newest of each
DRIFT_KEY = "dataset-drift"  # Prefect artifact key of the drift report
TOP_WORDS_IN_SUMMARY = 5  # the manifest summary quotes this many of the top new words


@dataclass(frozen=True)
class DriftOutcome:
    evaluation_id: str
    dataset_id: str
    model_id: str  # the champion that was scored
    new_rows: int  # rows the dataset version added (all of them scored)
    bits_per_char: float
    unseen_word_share: float | None  # None when the champion records no training dataset
    top_new_words: list[tuple[str, int]]
    report: str  # path of report.md


@dataclass(frozen=True)
class TrendOutcome:
    evaluation_id: str
    table: str  # path of trend.md
    plot: str  # path of trend.png
    points: list[dict[str, Any]]


def _newest_date(headlines: pl.LazyFrame) -> str:
    return str(headlines.select(pl.col("publish_date").max()).collect().item())


def _dataset_newest_date(store: Store, dataset_id: str) -> str:
    return _newest_date(read_headlines(store.path("datasets", dataset_id, verify=False)))


def evaluations_on_test(store: Store) -> dict[str, list[dict]]:
    """Dataset id -> manifests of the evaluations of one model on its test split, oldest
    first (drift, CSV and comparison evaluations excluded)."""
    found: dict[str, list[dict]] = {}
    for manifest in store.versions("evaluations"):
        parents = manifest["parents"]
        models, datasets = parents.get("models", []), parents.get("datasets", [])
        if (manifest["params"].get("split") == "test" and len(models) == 1
                and len(datasets) == 1):
            found.setdefault(datasets[0], []).append(manifest)
    return found


def own_test_evaluation(store: Store, model_id: str, dataset_id: str | None) -> dict | None:
    """The newest evaluation of model `model_id` alone on the test split of `dataset_id`
    (the manifest), or None."""
    return next((m for m in reversed(evaluations_on_test(store).get(dataset_id or "", []))
                 if m["parents"]["models"] == [model_id]), None)


@task(name="score-drift", cache_policy=NO_CACHE)
def score_drift(storage: str | None, dataset_id: str, model_id: str) -> DriftOutcome | None:
    """Score model `model_id` on the rows dataset version `dataset_id` added to its parent
    and publish the drift evaluation; None when the version added no rows."""
    # TensorFlow is imported here, not at module level: ingestion imports this module and
    # must stay fast when there is no champion to score.
    from charlm.data import Corpus
    from charlm.evaluate import evaluate
    from charlm.model import load_model

    store = open_store(storage)
    previous = (store.manifest("datasets", dataset_id)["parents"].get("datasets") or [None])[0]
    current = read_headlines(store.path("datasets", dataset_id))
    before = read_headlines(store.path("datasets", previous)) if previous else None
    new = added_rows(before, current).select("publish_date", "headline").collect()
    if new.is_empty():
        run_logger().info("dataset %s added no rows: no drift to measure", dataset_id)
        return None
    texts = new["headline"].to_list()
    net, _ = load_model(model_files(storage, model_id))
    metrics: dict[str, Any] = evaluate(net, Corpus.from_texts(texts))
    trained_on = training_dataset(storage, model_id)
    words = unseen_words(texts, training_index(storage, model_id)) if trained_on else {}
    reference = own_test_evaluation(store, model_id, trained_on)
    metrics.update(words, drift=BATCH, dataset=dataset_id, previous_dataset=previous,
                   model=model_id, training_dataset=trained_on, new_rows=len(texts),
                   first_date=str(new["publish_date"].min()),
                   last_date=str(new["publish_date"].max()),
                   newest_date=_newest_date(current),
                   champion_test_bpc=(reference["summary"].get("bits_per_char")
                                      if reference else None))
    metrics = json_safe(metrics)
    with store.publish("evaluations", parents={"datasets": [dataset_id], "models": [model_id]},
                       params={DRIFT: BATCH, "rows": "added to the previous dataset version"},
                       aliases=("latest", DRIFT_ALIAS)) as staging:
        out = EvaluationFiles.at(staging.path)
        out.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        out.report.write_text(drift_markdown(metrics))
        staging.summary.update({k: metrics.get(k) for k in (
            DRIFT, "dataset", "previous_dataset", "model", "new_rows", "newest_date",
            "bits_per_char", "perplexity", "champion_test_bpc", "unseen_word_share")})
        staging.summary["top_unseen_words"] = metrics.get(
            "top_unseen_words", [])[:TOP_WORDS_IN_SUMMARY]
    report = EvaluationFiles.at(store.path("evaluations", staging.id, verify=False)).report
    share = metrics.get("unseen_word_share")
    run_logger().info(
        "drift: champion %s on the %d new headlines of dataset %s: %.4f bits/char%s, %s "
        "unseen words (evaluation %s)", model_id, len(texts), dataset_id,
        metrics["bits_per_char"],
        f" (its test split: {metrics['champion_test_bpc']:.4f})"
        if metrics["champion_test_bpc"] is not None else "",
        f"{100 * share:.1f}%" if share is not None else "unknown share of", staging.id)
    return DriftOutcome(staging.id, dataset_id, model_id, len(texts), metrics["bits_per_char"],
                        share, [(w, c) for w, c in metrics.get("top_unseen_words", [])],
                        str(report))


def record_drift(storage: str | None, dataset_id: str) -> DriftOutcome | None:
    """Score the champion on the headlines dataset version `dataset_id` brought, before any
    retraining; publish the drift evaluation (and a Prefect artifact inside a run).

    None when nothing was recorded: no champion, a champion already trained on this
    version, no new rows, or a failure, which is logged in one line and never raised, so
    that the ingestion that called this always succeeds.
    """
    log = run_logger()
    try:
        champion = current_champion(storage)
        if champion is None:
            log.info("no %s model yet: no drift recorded for dataset %s", CHAMPION, dataset_id)
            return None
        if training_dataset(storage, champion) == dataset_id:
            log.info("the %s was trained on dataset %s: nothing new to it", CHAMPION,
                     dataset_id)
            return None
        outcome = run_task(score_drift, storage, dataset_id, champion)
        if outcome is not None:
            run_task(publish_markdown, Path(outcome.report).read_text(), key=DRIFT_KEY,
                     description=f"drift: {CHAMPION} {champion} on the {outcome.new_rows} "
                                 f"new headlines of dataset {dataset_id}")
        return outcome
    except Exception as error:  # drift is a measurement: it must never fail an ingestion
        log.warning("%s", one_line(f"drift not recorded for dataset {dataset_id}", error))
        return None


def drift_batches(store: Store) -> list[dict]:
    """Manifests of the drift evaluations (the champion on one new batch), oldest first."""
    return [m for m in store.versions("evaluations") if m["params"].get(DRIFT) == BATCH]


def _batch_points(store: Store) -> list[dict[str, Any]]:
    points = []
    for manifest in drift_batches(store):
        summary = manifest["summary"]
        points.append({
            "series": "new batch", "date": summary["newest_date"], "time": manifest["created_at"],
            "dataset": summary["dataset"], "model": summary["model"],
            "headlines": summary["new_rows"], "bits_per_char": summary["bits_per_char"],
            "unseen_word_share": summary.get("unseen_word_share"), "decision": None,
            "evaluation": manifest["id"]})
    return points


def _retrain_points(store: Store) -> list[dict[str, Any]]:
    """One point per challenger that had its test evaluation on its training dataset (a
    retrain; comparison runs excluded): the champion after it, on that dataset's test split.

    That is the challenger if it ever held the title (the alias history), else the champion
    it faced: `train_challenger` evaluates that one right after the challenger, so it is the
    model of the next test evaluation on the dataset. Only version ids are compared (one
    clock), never the history's wall-clock times.
    """
    on_test = evaluations_on_test(store)
    compared = {model for m in store.versions("evaluations") if m["params"].get("comparison")
                for model in m["parents"].get("models", [])}
    crowned = {change["id"] for change in store.alias_history("models", CHAMPION)}
    newest: dict[str, str] = {}  # dataset id -> its newest publish date, read once each
    points = []
    for manifest in store.versions("models"):
        model_id = manifest["id"]
        datasets = manifest["parents"].get("datasets", [])
        if not datasets or model_id in compared:
            continue
        dataset_id = datasets[0]
        scored = on_test.get(dataset_id, [])
        own = next((i for i, m in enumerate(scored) if m["parents"]["models"] == [model_id]),
                   None)
        if own is None:
            continue  # never evaluated on its test split: not a challenge
        if model_id in crowned:
            evaluation, decision = scored[own], "promoted"
        else:
            evaluation = next((m for m in scored[own + 1:]
                               if m["parents"]["models"] != [model_id]), None)
            if evaluation is None or evaluation["parents"]["models"][0] not in crowned:
                continue
            decision = f"kept over {model_id}"
        summary = evaluation["summary"]
        if dataset_id not in newest:
            newest[dataset_id] = _dataset_newest_date(store, dataset_id)
        points.append({
            "series": "retrain", "date": newest[dataset_id],
            "time": evaluation["created_at"], "dataset": dataset_id,
            "model": evaluation["parents"]["models"][0], "headlines": summary.get("headlines"),
            "bits_per_char": summary["bits_per_char"], "unseen_word_share": None,
            "decision": decision, "evaluation": evaluation["id"]})
    return points


def drift_points(storage: str | None) -> list[dict[str, Any]]:
    """Every point of the drift trend, in time order (newest headline date, then when it
    was measured)."""
    store = open_store(storage)
    points = _batch_points(store) + _retrain_points(store)
    return sorted(points, key=lambda p: (p["date"], p["time"]))


@task(name="publish-drift-trend", cache_policy=NO_CACHE)
def publish_drift_trend(storage: str | None) -> TrendOutcome:
    """Publish the champion's drift trend (table, JSON, PNG) as an evaluation version."""
    points = drift_points(storage)
    if not points:
        raise ValueError("no drift to show yet: the trend needs a drift measurement (ingest "
                         "new headlines while a champion exists) or a retrain")
    store = open_store(storage)
    with store.publish("evaluations", params={
            DRIFT: TREND, "evaluations": sorted({p["evaluation"] for p in points})},
            aliases=("latest", TREND_ALIAS)) as staging:
        out = DriftTrendFiles.at(staging.path)
        out.data.write_text(json.dumps(points, indent=2) + "\n")
        plot_drift_trend(points, out.plot)
        table = drift_trend_table(points)
        out.table.write_text("# The champion's drift\n\nBits per character of the champion on "
                             "each new batch of headlines at arrival (before any retraining) "
                             "and on the test split after each retrain.\n\n" + table
                             + f"\n![the champion's bits per character over time]"
                               f"({out.plot.name})\n")
        latest = {series: [p for p in points if p["series"] == series][-1:]
                  for series in ("new batch", "retrain")}
        staging.summary.update({DRIFT: TREND, "points": len(points),
                                "latest_batch_bpc": next(
                                    (p["bits_per_char"] for p in latest["new batch"]), None),
                                "latest_retrain_bpc": next(
                                    (p["bits_per_char"] for p in latest["retrain"]), None)})
    where = DriftTrendFiles.at(store.path("evaluations", staging.id, verify=False))
    run_logger().info("published drift trend %s (%d points): %s", staging.id, len(points),
                      where.plot)
    return TrendOutcome(staging.id, str(where.table), str(where.plot), points)
