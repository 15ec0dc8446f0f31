"""The architecture comparison: rnn, gru and lstm trained on equal budgets, side by side.

Reproduces the article's claim (deep GRU/LSTM beat the simple RNN on characters)
with numbers: each cell type is trained with the same size, data and time budget,
evaluated on the same test split, and the comparison (table, JSON, plot of
validation bits per char against training time, example headlines) is published as one
evaluation version (storage.layout.ComparisonFiles) whose parents are the models and the
dataset. `compare_architectures` is the one operation: `charlm compare` and the
`compare-architectures` flow both call it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import ModelConfig, TrainConfig
from charlm.report import comparison_table, plot_comparison
from storage.layout import ComparisonFiles
from tasks.common import open_store, run_logger, run_task
from tasks.evaluate import EvaluationOutcome, evaluate_model
from tasks.presets import COMPARE_CELLS, COMPARE_NETWORK, COMPARE_SAMPLES, COMPARE_TRAINING
from tasks.train import train_model


@dataclass(frozen=True)
class ComparisonOutcome:
    evaluation_id: str
    table: str  # path of the markdown table
    plot: str  # path of the plot
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
            "examples": list(ev.metrics.get("examples", []))[:3],
            "model": ev.model_id, "evaluation": ev.evaluation_id,
        })
    parents = {"models": [ev.model_id for ev in evaluations], "datasets": [dataset_id]}
    with store.publish("evaluations", parents=parents, params={"comparison": True},
                       aliases=("latest", "comparison")) as staging:
        out = ComparisonFiles.at(staging.path)
        out.data.write_text(json.dumps(rows, indent=2) + "\n")
        plot_comparison(runs, out.plot)
        out.table.write_text(
            "# Architecture comparison\n\n"
            f"Dataset `{dataset_id}`, equal training budget per model; test bits per char "
            "on the dataset's test split.\n\n" + comparison_table(rows)
            + f"\n![validation bits per char against training time]({out.plot.name})\n")
        staging.summary.update(comparison=[{k: r[k] for k in (
            "cell", "validation_bpc", "test_bpc")} for r in rows])
    where = ComparisonFiles.at(store.path("evaluations", staging.id, verify=False))
    run_logger().info("published comparison %s: %s", staging.id, ", ".join(
        f"{r['cell']} {r['test_bpc']:.4f}" for r in rows))
    return ComparisonOutcome(staging.id, str(where.table), str(where.plot), rows)


def compare_architectures(storage: str | None, dataset: str = "latest",
                          cells: Sequence[str] = COMPARE_CELLS,
                          network: ModelConfig = COMPARE_NETWORK,
                          training: TrainConfig = COMPARE_TRAINING,
                          samples: int = COMPARE_SAMPLES) -> ComparisonOutcome:
    """Train and evaluate one model per cell type, one at a time (each gets the whole
    machine, so budgets stay equal), then publish the comparison."""
    if not cells:
        raise ValueError("no cell types to compare")
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    networks = [replace(network, cell=cell) for cell in cells]  # validates every cell name
    dataset_id = open_store(storage).resolve("datasets", dataset)
    evaluations = []
    for cell_network in networks:
        trained = run_task(train_model, storage, dataset_id, cell_network, training)
        evaluations.append(run_task(evaluate_model, storage, trained.model_id, dataset_id,
                                    "test", samples))
    return run_task(publish_comparison, storage, dataset_id, evaluations)
