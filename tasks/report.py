"""What the flows show in Prefect's UI: a training progress bar, reports and tables (artifacts).

Artifact keys are fixed (lowercase, dashes), so every run adds a new version of the same
artifact and the UI's Artifacts page shows its history. Artifacts are a view, never a source
of truth: failing to write one logs a warning and never fails a run (the store has the data).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from charlm.config import TrainConfig
from charlm.train import Callback, TrainResult
from tasks.common import open_store, run_logger

PROGRESS_KEY = "train-headlines-progress"
REPORT_KEY = "train-headlines-report"
GENERATION_KEY = "generate-headlines"
MAX_TABLE_ROWS = 200  # the UI renders tables client-side; a million rows would hang it


def in_prefect_run() -> bool:
    """True inside a flow or task run (artifacts need one to attach to; the CLI has none)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class TrainingProgress(Callback):
    """A progress artifact (0-100 %) updated while a model trains.

    Progress is the larger of the planned batches done and the time budget used, since
    training stops at whichever ends first. Updates are throttled to one per
    `every_seconds` (plus one per epoch): each is an API call.
    """

    def __init__(self, train_config: TrainConfig, key: str = PROGRESS_KEY,
                 every_seconds: float = 5.0) -> None:
        self.config = train_config
        self.key = key
        self.every = every_seconds
        self.artifact_id: Any = None
        self.enabled = in_prefect_run()
        self.start = time.monotonic()
        self.last = 0.0
        self.progress = 0.0

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # a dashboard glitch must not kill a training run
            self.enabled = False
            run_logger().warning("progress artifact %s failed (%s); no further updates",
                                 action, error)
            return None

    def _update(self, progress: float, description: str) -> None:
        self.progress = max(self.progress, min(100.0, progress))  # never moves backwards
        if not self.enabled:
            return
        if self.artifact_id is None:
            self.artifact_id = self._call("creation", create_progress_artifact,
                                          progress=self.progress, key=self.key,
                                          description=description)
        else:
            self._call("update", update_progress_artifact, artifact_id=self.artifact_id,
                       progress=self.progress, description=description)
        self.last = time.monotonic()

    def _fraction(self, epoch: int, batch: int, batches: int) -> float:
        by_batches = (epoch - 1 + batch / max(batches, 1)) / self.config.epochs
        by_time = (time.monotonic() - self.start) / (self.config.max_minutes * 60.0)
        return 100.0 * max(by_batches, by_time)

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.start = time.monotonic()
        resumed = info.get("resumed_from")
        start = 100.0 * resumed["epoch"] / self.config.epochs if resumed else 0.0
        self._update(start, f"training on {info['headlines']} headlines"
                     + (f", resumed at epoch {resumed['epoch'] + 1}" if resumed else ""))

    def on_batch_end(self, step: int, logs: dict[str, Any]) -> None:
        if time.monotonic() - self.last < self.every:
            return
        self._update(self._fraction(logs["epoch"], logs["batch"], logs["batches"]),
                     f"epoch {logs['epoch']}/{self.config.epochs}, batch "
                     f"{logs['batch']}/{logs['batches']}: {logs['bits_per_char']:.3f} bits/char")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self._update(self._fraction(epoch, 1, 1),
                     f"epoch {epoch}/{self.config.epochs}: validation "
                     f"{logs['validation_bpc']:.4f} bits/char")

    def on_train_end(self, result: TrainResult) -> None:
        self._update(100.0, f"done ({result.stopped}): best validation "
                     f"{result.best_validation_bpc:.4f} bits/char at epoch {result.best_epoch}")


@dataclass(frozen=True)
class ModelRow:
    """One column of the challenger-vs-champion table."""

    model_id: str
    trained_on: str
    validation_bpc: float | None
    test_bpc: float | None
    test_perplexity: float | None
    epochs: int | None
    parameters: int | None


def model_row(storage: str | None, model_id: str, metrics: dict[str, Any] | None) -> ModelRow:
    """Summary of a stored model plus its test metrics (None when not evaluated)."""
    manifest = open_store(storage).manifest("models", model_id)
    summary = manifest.get("summary", {})
    metrics = metrics or {}
    return ModelRow(model_id, ",".join(manifest.get("parents", {}).get("datasets", [])) or "?",
                    summary.get("validation_bpc"), metrics.get("bits_per_char"),
                    metrics.get("perplexity"), summary.get("epochs"), summary.get("parameters"))


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def train_report_markdown(dataset_id: str, challenger: ModelRow, champion: ModelRow | None,
                          promoted: bool, samples: list[str]) -> str:
    """The training report: metrics table, the decision, sample headlines."""
    columns = [("challenger", challenger)] + ([("champion", champion)] if champion else [])
    rows = [
        ("model", lambda r: _code(r.model_id)),
        ("trained on dataset", lambda r: _code(r.trained_on)),
        ("validation bits/char", lambda r: _cell(r.validation_bpc)),
        ("test bits/char", lambda r: _cell(r.test_bpc)),
        ("test perplexity", lambda r: _cell(r.test_perplexity, 3)),
        ("epochs", lambda r: _cell(r.epochs)),
        ("parameters", lambda r: _cell(r.parameters)),
    ]
    lines = [f"# Training report: dataset `{dataset_id}`", "",
             "| | " + " | ".join(name for name, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(get(r) for _, r in columns) + " |"
              for label, get in rows]
    lines.append("")
    if champion is None:
        lines.append("**Decision:** first model, promoted to champion." if promoted else
                     "**Decision:** not promoted: another run set a champion meanwhile.")
    elif promoted:
        lines.append("**Decision:** the challenger has lower test bits/char: promoted to "
                     "champion.")
    else:
        lines.append("**Decision:** the champion stays (the challenger is not better on the "
                     "test split).")
    if samples:
        # A fenced block: headlines may hold |, *, # or _ that markdown would interpret.
        lines += ["", f"## Sample headlines from {_code(challenger.model_id)}", "", "```"]
        lines += [s.replace("```", "'''") for s in samples]
        lines.append("```")
    return "\n".join(lines) + "\n"


def skipped_report_markdown(dataset_id: str, champion_id: str) -> str:
    return (f"# Training report: dataset `{dataset_id}`\n\nNo new headlines: champion "
            f"`{champion_id}` was already trained on dataset `{dataset_id}`; nothing was "
            "trained (run with force=true to retrain anyway).\n")


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_markdown(markdown: str, key: str = REPORT_KEY, description: str = "") -> str | None:
    """Create a markdown artifact version under `key`; its id (None outside Prefect/on error)."""
    if not in_prefect_run():
        return None
    try:
        return str(create_markdown_artifact(markdown=markdown, key=key,
                                            description=description or None))
    except Exception as error:
        run_logger().warning("could not create artifact %s: %s", key, error)
        return None


@task(name="publish-table", cache_policy=NO_CACHE)
def publish_table(rows: list[dict[str, Any]], key: str = GENERATION_KEY,
                  description: str = "") -> str | None:
    """Create a table artifact from the first MAX_TABLE_ROWS rows; its id (None on error)."""
    if not in_prefect_run():
        return None
    shown = rows[:MAX_TABLE_ROWS]
    if len(rows) > len(shown):
        description = (description + f" (first {len(shown)} of {len(rows)} rows)").strip()
    try:
        return str(create_table_artifact(table=shown, key=key, description=description or None))
    except Exception as error:
        run_logger().warning("could not create artifact %s: %s", key, error)
        return None
