"""The evaluation stage: a model on a dataset split in, an evaluation version out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import SPLITS
from charlm.data import Corpus
from charlm.evaluate import evaluate
from charlm.model import load_model
from storage.datasets import read_texts
from tasks.common import open_store, run_logger

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class EvaluationOutcome:
    evaluation_id: str
    model_id: str
    dataset_id: str
    split: str
    metrics: dict[str, Any]


def check_split(split: str) -> str:
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, all; got {split!r}")
    return split


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(storage: str | None, model: str = "latest", dataset: str = "latest",
                   split: str = "test") -> EvaluationOutcome:
    """Exact bits per char / perplexity of `model` on `split` of `dataset`; published."""
    check_split(split)
    log = run_logger()
    store = open_store(storage)
    model_id = store.resolve("models", model)
    dataset_id = store.resolve("datasets", dataset)
    texts = read_texts(store.path("datasets", dataset_id), None if split == "all" else split)
    if not texts:
        raise ValueError(f"dataset {dataset_id} has no {split!r} headlines to evaluate on")
    net, _ = load_model(store.path("models", model_id))
    metrics = evaluate(net, Corpus.from_texts(texts))
    metrics.update(model=model_id, dataset=dataset_id, split=split)
    with store.publish("evaluations", parents={"models": [model_id], "datasets": [dataset_id]},
                       params={"split": split}) as staging:
        (staging.path / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        staging.summary.update(bits_per_char=metrics["bits_per_char"],
                               perplexity=metrics["perplexity"], split=split,
                               model=model_id, dataset=dataset_id)
    log.info("model %s on %s/%s: %.4f bits/char (evaluation %s)", model_id, dataset_id, split,
             metrics["bits_per_char"], staging.id)
    return EvaluationOutcome(staging.id, model_id, dataset_id, split, metrics)
