"""The evaluation stage: a model on a dataset split in, an evaluation version out.

An evaluation (storage.layout.EvaluationFiles) holds the metrics (exact bits per char and
perplexity with a per-length breakdown, plus the quality of N generated headlines:
novelty, word validity, distinct-n, duplicates, lengths, runaways), a markdown report and
the model's learning-curve plot.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import SampleConfig, to_dict
from charlm.data import Corpus
from charlm.evaluate import evaluate
from charlm.model import load_model, read_config
from charlm.quality import TrainingIndex, sample_quality
from charlm.report import markdown_report, plot_learning_curve
from charlm.sample import generate
from storage.datasets import check_split, read_texts
from storage.layout import EvaluationFiles
from tasks.common import model_files, open_store, run_logger
from tasks.presets import EVALUATION_SAMPLES

QUALITY_SEED = 1234  # fixed so evaluations of different models draw comparably


@dataclass(frozen=True)
class EvaluationOutcome:
    evaluation_id: str
    model_id: str
    dataset_id: str
    split: str
    metrics: dict[str, Any]
    report: str  # path of the markdown report


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: shares with nothing to count become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(storage: str | None, model: str = "latest", dataset: str = "latest",
                   split: str = "test", samples: int = EVALUATION_SAMPLES) -> EvaluationOutcome:
    """Exact likelihood of `model` on `split` of `dataset`, plus the quality of `samples`
    generated headlines (top-p 0.9, fixed seed) against the dataset's training split."""
    check_split(split)
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    log = run_logger()
    store = open_store(storage)
    model_id = store.resolve("models", model)
    dataset_id = store.resolve("datasets", dataset)
    dataset_dir = store.path("datasets", dataset_id)
    texts = read_texts(dataset_dir, split)
    if not texts:
        raise ValueError(f"dataset {dataset_id} has no {split!r} headlines to evaluate on")
    files = model_files(storage, model_id)
    net, _ = load_model(files)
    history = read_config(files)[1].get("result", {}).get("history", [])
    metrics: dict[str, Any] = evaluate(net, Corpus.from_texts(texts))
    metrics.update(model=model_id, dataset=dataset_id, split=split)
    quality: dict[str, Any] = {}
    if samples:
        sampling = SampleConfig(seed=QUALITY_SEED)
        generated = generate(net, samples, sampling)
        index = TrainingIndex.from_texts(read_texts(dataset_dir, "train"))
        quality = sample_quality(generated.texts, index, generated.truncated,
                                 sampling.max_new_chars)
        quality["sampling"] = to_dict(sampling)
        metrics.update(quality)
    metrics = _json_safe(metrics)
    with store.publish("evaluations", parents={"models": [model_id], "datasets": [dataset_id]},
                       params={"split": split, "samples": samples}) as staging:
        out = EvaluationFiles.at(staging.path)
        out.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        if history:
            plot_learning_curve(history, out.learning_curve)
        out.report.write_text(markdown_report(model_id, metrics, _json_safe(quality), history,
                                              out.learning_curve.name if history else None))
        staging.summary.update({k: metrics[k] for k in (
            "bits_per_char", "perplexity", "split", "model", "dataset", "novelty",
            "word_validity") if k in metrics})
    report = EvaluationFiles.at(store.path("evaluations", staging.id, verify=False)).report
    log.info("model %s on %s/%s: %.4f bits/char (evaluation %s, report %s)", model_id,
             dataset_id, split, metrics["bits_per_char"], staging.id, report)
    return EvaluationOutcome(staging.id, model_id, dataset_id, split, metrics, str(report))
