"""The evaluation stage: a model scored on headlines in, an evaluation version out.

Two sources of headlines, one scoring path (`_evaluate`):

- `evaluate_model`: a view of a dataset version (a hash split, "all", or "recent[:DAYS]",
  the newest DAYS of publish dates; see storage.datasets). For the recent view the metrics
  also say how many of its rows are in each hash split: recent rows may include rows the
  model was trained on.
- `evaluate_csvs`: headline CSVs that were never ingested, read and cleaned by ingestion's
  rules (with the IngestConfig the model's training dataset was ingested with, when it
  records one), the quarantine counted; nothing is added to any dataset. The version's
  parent is the model alone, and its manifest names each file and its sha256.

An evaluation (storage.layout.EvaluationFiles) holds the metrics (exact bits per char and
perplexity with a per-length breakdown, plus the quality of N generated headlines:
novelty, word validity, distinct-n, duplicates, lengths, runaways), a markdown report and
the model's learning-curve plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import IngestConfig, SampleConfig, to_dict
from charlm.data import Corpus
from charlm.evaluate import evaluate
from charlm.model import load_model, read_config
from charlm.quality import TrainingIndex, sample_quality
from charlm.report import markdown_report, plot_learning_curve
from charlm.sample import generate
from ingestion.plan import plan_ingest
from storage.datasets import SPLITS, check_split, read_texts, read_view, recent_days, value_counts
from storage.layout import EvaluationFiles
from tasks.common import (
    json_safe,
    model_files,
    open_store,
    run_logger,
    training_dataset,
    training_index,
)
from tasks.ingest import ingest_config, source_files
from tasks.presets import EVALUATION_SAMPLES

QUALITY_SEED = 1234  # fixed so evaluations of different models draw comparably
CSV_SOURCE = "csv"  # params["source"] of an evaluation on CSV files


@dataclass(frozen=True)
class EvaluationOutcome:
    evaluation_id: str
    model_id: str
    dataset_id: str | None  # the dataset scored; None for CSV files
    split: str | None  # the view of it; None for CSV files
    metrics: dict[str, Any]
    report: str  # path of the markdown report


def _check_samples(samples: int) -> None:
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")


def _evaluate(storage: str | None, model_id: str, texts: list[str], described: dict[str, Any],
              index: TrainingIndex | None, samples: int, parents: dict[str, list[str]],
              params: dict[str, Any]) -> EvaluationOutcome:
    """Score `texts` exactly, add `described` and the quality of `samples` generated
    headlines against `index` (skipped without one), publish the evaluation version."""
    store = open_store(storage)
    files = model_files(storage, model_id)
    net, _ = load_model(files)
    history = read_config(files)[1].get("result", {}).get("history", [])
    metrics: dict[str, Any] = evaluate(net, Corpus.from_texts(texts))
    metrics.update(model=model_id, **described)
    quality: dict[str, Any] = {}
    if samples and index is not None:
        sampling = SampleConfig(seed=QUALITY_SEED)
        generated = generate(net, samples, sampling)
        quality = sample_quality(generated.texts, index, generated.truncated,
                                 sampling.max_new_chars)
        quality["sampling"] = to_dict(sampling)
        metrics.update(quality)
    metrics = json_safe(metrics)
    with store.publish("evaluations", parents=parents, params=params) as staging:
        out = EvaluationFiles.at(staging.path)
        out.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        if history:
            plot_learning_curve(history, out.learning_curve)
        out.report.write_text(markdown_report(model_id, metrics, json_safe(quality), history,
                                              out.learning_curve.name if history else None))
        staging.summary.update({k: metrics[k] for k in (
            "bits_per_char", "perplexity", "headlines", "split", "model", "dataset", "files",
            "quarantined_rows", "novelty", "word_validity") if k in metrics})
    report = EvaluationFiles.at(store.path("evaluations", staging.id, verify=False)).report
    where = (f"{metrics['dataset']}/{metrics['split']}" if metrics.get("dataset")
             else ", ".join(metrics.get("files", [])))
    run_logger().info("model %s on %s: %.4f bits/char (evaluation %s, report %s)", model_id,
                      where, metrics["bits_per_char"], staging.id, report)
    return EvaluationOutcome(staging.id, model_id, metrics.get("dataset"), metrics.get("split"),
                             metrics, str(report))


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(storage: str | None, model: str = "latest", dataset: str = "latest",
                   split: str = "test", samples: int = EVALUATION_SAMPLES) -> EvaluationOutcome:
    """Exact likelihood of `model` on a view of `dataset` (`split`: train, validation, test,
    all or recent[:DAYS]), plus the quality of `samples` generated headlines (top-p 0.9,
    fixed seed) against the dataset's training split."""
    check_split(split)
    _check_samples(samples)
    store = open_store(storage)
    model_id = store.resolve("models", model)
    dataset_id = store.resolve("datasets", dataset)
    dataset_dir = store.path("datasets", dataset_id)
    view = read_view(dataset_dir, split)
    if view.is_empty():
        raise ValueError(f"dataset {dataset_id} has no {split!r} headlines to evaluate on")
    described: dict[str, Any] = {"dataset": dataset_id, "split": split}
    days = recent_days(split)
    if days is not None:
        counts = value_counts(view, "split")
        described["recent"] = {
            "days": days, "first_date": str(view["publish_date"].min()),
            "last_date": str(view["publish_date"].max()),
            "splits": {name: counts.get(name, 0) for name in SPLITS}}
    index = TrainingIndex.from_texts(read_texts(dataset_dir, "train")) if samples else None
    return _evaluate(storage, model_id, view["headline"].to_list(), described, index, samples,
                     {"models": [model_id], "datasets": [dataset_id]},
                     {"split": split, "samples": samples})


@task(name="evaluate-csv", cache_policy=NO_CACHE)
def evaluate_csvs(storage: str | None, model: str, paths: list[str],
                  samples: int = EVALUATION_SAMPLES) -> EvaluationOutcome:
    """Exact likelihood of `model` on the headlines of CSV files that need not have been
    ingested: cleaned by ingestion's rules (the model's training dataset's IngestConfig,
    else the default), de-duplicated, the quarantine counted; plus the quality of `samples`
    generated headlines against the model's training split. No dataset is touched."""
    if not paths:
        raise ValueError("no CSV files given")
    _check_samples(samples)
    store = open_store(storage)
    model_id = store.resolve("models", model)
    trained_on = training_dataset(storage, model_id)
    cleaning = (ingest_config(storage, trained_on) if trained_on else None) or IngestConfig()
    plan = plan_ingest(None, [Path(p) for p in paths], cleaning)  # a bad file raises here
    names = [Path(p).name for p in paths]
    texts = plan.headlines["headline"].to_list()
    if not texts:
        raise ValueError(f"{', '.join(names)}: no usable headlines ({plan.describe()})")
    index = training_index(storage, model_id) if trained_on else None
    described = {
        "dataset": None, "split": None, "files": names, "scored_on": ", ".join(names),
        "rows_read": plan.rows + plan.duplicates + plan.quarantined_rows,
        "duplicates": plan.duplicates, "quarantined_rows": plan.quarantined_rows,
        "quarantined_by_reason": plan.quarantined_by_reason,
        "training_dataset": trained_on,
        # Headlines also in the model's training split: their bits/char flatter the model.
        "headlines_in_training": sum(t in index for t in texts) if index else None,
    }
    if index is None:
        run_logger().info("model %s records no training dataset: no sample quality", model_id)
    return _evaluate(storage, model_id, texts, described, index, samples,
                     {"models": [model_id]},
                     {"source": CSV_SOURCE, "files": source_files(paths),
                      "ingest": to_dict(cleaning),
                      "samples": samples})
