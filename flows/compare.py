"""The `compare-architectures` flow: rnn, gru and lstm on equal budgets, side by side.

Runs `tasks.compare.compare_architectures` (the operation `charlm compare` runs too) and
shows the comparison table as the `compare-architectures-report` artifact.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from charlm.config import ModelConfig, TrainConfig
from tasks import compare
from tasks.compare import ComparisonOutcome
from tasks.presets import COMPARE_CELLS, COMPARE_NETWORK, COMPARE_SAMPLES, COMPARE_TRAINING
from tasks.report import publish_markdown

REPORT_KEY = "compare-architectures-report"


@flow(name="compare-architectures",
      description="Train rnn, gru and lstm with equal budgets and compare them.")
def compare_architectures(dataset: str = "latest", cells: list[str] | None = None,
                          network: ModelConfig = COMPARE_NETWORK,
                          training: TrainConfig = COMPARE_TRAINING,
                          samples: int = COMPARE_SAMPLES,
                          storage: str | None = None) -> ComparisonOutcome:
    """Train one model per cell type on `dataset` with equal budgets and compare them.

    Args:
        dataset: dataset version id or alias.
        cells: cell types to compare (default rnn, gru, lstm).
        network: the shared model shape; its `cell` is replaced by each of `cells`.
        training: the shared budget (max_minutes per model; early stopping off by default).
        samples: headlines generated per model for the quality metrics.
        storage: artifact store root (default: $CHARLM_STORAGE or ./charlm-store).
    """
    outcome = compare.compare_architectures(storage, dataset, cells or COMPARE_CELLS,
                                            network, training, samples)
    publish_markdown(Path(outcome.table).read_text(), key=REPORT_KEY,
                     description=f"architecture comparison {outcome.evaluation_id}")
    return outcome
