"""The `compare-architectures` flow: rnn, gru and lstm on equal budgets, side by side.

Reproduces the article's claim that deep GRU/LSTM beat the simple RNN on characters:
each cell type trains with the same size, data and time budget, is evaluated on the
same test split, and the comparison (table, plot, samples) is published as one
evaluation version and shown as the `compare-architectures-report` artifact.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import flow

from charlm.config import ModelConfig, TrainConfig
from tasks.common import open_store
from tasks.compare import ComparisonOutcome, publish_comparison
from tasks.evaluate import evaluate_model
from tasks.report import publish_markdown
from tasks.train import train_model

REPORT_KEY = "compare-architectures-report"
DEFAULT_NETWORK = ModelConfig(hidden=256, depth=2)
# Equal budgets: every model trains for the same minutes; early stopping is off.
DEFAULT_TRAINING = TrainConfig(max_minutes=5.0, epochs=1000, patience=1000)


@flow(name="compare-architectures",
      description="Train rnn, gru and lstm with equal budgets and compare them.")
def compare_architectures(dataset: str = "latest", cells: list[str] | None = None,
                          network: ModelConfig = DEFAULT_NETWORK,
                          training: TrainConfig = DEFAULT_TRAINING, samples: int = 200,
                          storage: str | None = None) -> ComparisonOutcome:
    cells = cells or ["rnn", "gru", "lstm"]
    for cell in cells:
        replace(network, cell=cell)  # validates each cell name before any training
    dataset_id = open_store(storage).resolve("datasets", dataset)
    evaluations = []
    for cell in cells:  # one at a time: each run gets the whole machine, budgets stay equal
        trained = train_model(storage, dataset_id, replace(network, cell=cell), training)
        evaluations.append(evaluate_model(storage, trained.model_id, dataset_id, "test",
                                          samples))
    outcome = publish_comparison(storage, dataset_id, evaluations)
    publish_markdown(Path(outcome.table).read_text(), key=REPORT_KEY,
                     description=f"architecture comparison {outcome.evaluation_id}")
    return outcome
