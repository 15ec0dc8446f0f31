"""The architecture comparison: rnn, gru and lstm trained on equal budgets, side by side.

Reproduces the article's claim (deep GRU/LSTM beat the simple RNN on characters)
with numbers: each cell type is trained with the same size, data and time budget,
evaluated on the same test split, and the comparison (table, JSON, plot of
validation bits per char against training time, samples) is published as one
evaluation version whose parents are the models and the dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import ModelConfig, TrainConfig
from charlm.report import comparison_table, plot_comparison
from tasks.common import open_store, run_logger
from tasks.evaluate import EvaluationOutcome, evaluate_model
from tasks.train import train_model

TABLE_FILE = "comparison.md"
PLOT_FILE = "comparison.png"
DATA_FILE = "comparison.json"


@dataclass(frozen=True)
class ComparisonOutcome:
    evaluation_id: str
    table: str  # path of comparison.md
    plot: str  # path of comparison.png
    rows: list[dict[str, Any]]


@task(name="publish-comparison", cache_policy=NO_CACHE)
def publish_comparison(storage: str | None, dataset_id: str,
                       evaluations: list[EvaluationOutcome]) -> ComparisonOutcome:
    """Collect trained + evaluated models into comparison.md/.json/.png."""
    store = open_store(storage)
    rows, runs = [], {}
    for ev in evaluations:
        manifest = store.manifest("models", ev.model_id)
        summary, model = manifest["summary"], manifest["params"]["model"]
        label = f"{model['cell']} {model['hidden']}x{model['depth']}"
        runs[label] = summary.get("history", [])
        rows.append({
            "cell": model["cell"], "hidden": model["hidden"], "depth": model["depth"],
            "parameters": summary.get("parameters"),
            "minutes": summary.get("seconds", 0.0) / 60.0,
            "validation_bpc": summary.get("validation_bpc"),
            "test_bpc": ev.metrics["bits_per_char"],
            "novelty": ev.metrics.get("novelty"),
            "word_validity": ev.metrics.get("word_validity"),
            "samples": list(ev.metrics.get("examples", []))[:3],
            "model": ev.model_id, "evaluation": ev.evaluation_id,
        })
    parents = {"models": [ev.model_id for ev in evaluations], "datasets": [dataset_id]}
    with store.publish("evaluations", parents=parents, params={"comparison": True},
                       aliases=("latest", "comparison")) as staging:
        (staging.path / DATA_FILE).write_text(json.dumps(rows, indent=2) + "\n")
        plot_comparison(runs, staging.path / PLOT_FILE)
        (staging.path / TABLE_FILE).write_text(
            "# Architecture comparison\n\n"
            f"Dataset `{dataset_id}`, equal training budget per model; test bits per char "
            "on the dataset's test split.\n\n" + comparison_table(rows)
            + f"\n![validation bits per char against training time]({PLOT_FILE})\n")
        staging.summary.update(comparison=[{k: r[k] for k in (
            "cell", "validation_bpc", "test_bpc")} for r in rows])
    where = store.path("evaluations", staging.id, verify=False)
    run_logger().info("published comparison %s: %s", staging.id, ", ".join(
        f"{r['cell']} {r['test_bpc']:.4f}" for r in rows))
    return ComparisonOutcome(staging.id, str(where / TABLE_FILE), str(where / PLOT_FILE), rows)


def compare_architectures(storage: str | None, dataset: str, cells: list[str],
                          model_config: ModelConfig, train_config: TrainConfig,
                          samples: int = 200) -> ComparisonOutcome:
    """Train and evaluate one model per cell type in turn (the CLI's path; the flow maps)."""
    if not cells:
        raise ValueError("no cell types to compare")
    store = open_store(storage)
    dataset_id = store.resolve("datasets", dataset)
    evaluations = []
    for cell in cells:
        trained = train_model.fn(storage, dataset_id, replace(model_config, cell=cell),
                                 train_config)
        evaluations.append(evaluate_model.fn(storage, trained.model_id, dataset_id, "test",
                                             samples))
    return publish_comparison.fn(storage, dataset_id, evaluations)
