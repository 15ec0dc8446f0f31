"""Training's side effects, all in one place: the callbacks charlm.train.fit calls.

| callback | does | used by |
| --- | --- | --- |
| `LogEpochs` | one log line per epoch (the Prefect UI's run log, or stderr) | every training |
| `TensorBoardLog` | TensorBoard event files, published with the model | every training |
| `TrainingProgress` | the `train-headlines-progress` artifact (0-100 %) | the train flow |
| `ProgressBar` | a rich progress bar of the current epoch on a terminal | the command line |

The loop itself (charlm.train) knows only the `Callback` base class.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import tensorflow as tf
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from charlm.config import TrainConfig
from charlm.train import Callback, TrainResult
from storage import one_line
from tasks.common import in_prefect_run, run_logger
from tasks.native_logs import terminal_stderr

__all__ = ["PROGRESS_KEY", "LogEpochs", "ProgressBar", "TensorBoardLog", "TrainingProgress",
           "terminal_progress"]

PROGRESS_KEY = "train-headlines-progress"


class LogEpochs(Callback):
    """One log line per epoch (and one when training starts or resumes)."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter) -> None:
        self.logger = logger

    def on_train_begin(self, info: dict[str, Any]) -> None:
        resumed = info.get("resumed_from")
        self.logger.info(
            "training on %d headlines (%d characters per epoch, %d batches)%s",
            info["headlines"], info["characters_per_epoch"], info["batches_per_epoch"],
            f"; resumed from epoch {resumed['epoch'] + 1} batch {resumed['batch']}"
            if resumed else "")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.logger.info(
            "epoch %d: train %.4f bits/char, validation %.4f bits/char, %.1f s, lr %.2e",
            epoch, logs["train_bpc"], logs["validation_bpc"], logs["seconds"],
            logs["learning_rate"])


class TensorBoardLog(Callback):
    """Writes per-report and per-epoch scalars as TensorBoard event files into `logdir`."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = Path(logdir)
        self.writer: Any = None

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.writer = tf.summary.create_file_writer(str(self.logdir))

    def _scalars(self, step: int, values: dict[str, float]) -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def on_batch_end(self, step: int, logs: dict[str, Any]) -> None:
        if self.writer is not None:  # called per read-back of the loss, not per step
            self._scalars(step, {"batch/bits_per_char": logs["bits_per_char"],
                                 "batch/learning_rate": logs["learning_rate"]})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.writer is not None:
            self._scalars(epoch, {"epoch/train_bits_per_char": logs["train_bpc"],
                                  "epoch/validation_bits_per_char": logs["validation_bpc"]})
            self.writer.flush()

    def on_train_end(self, result: TrainResult) -> None:
        if self.writer is not None:
            self.writer.close()


class TrainingProgress(Callback):
    """A progress artifact (0-100 %) updated while a model trains (inside Prefect runs only).

    Progress is the larger of the planned batches done and the time budget used, since
    training stops at whichever ends first. Updates are throttled to one per
    `every_seconds` (plus one per epoch): each is an API call. A dashboard glitch never
    stops training: after a failed call the artifact is left alone.
    """

    def __init__(self, training: TrainConfig, key: str = PROGRESS_KEY,
                 every_seconds: float = 5.0) -> None:
        self.config = training
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
            run_logger().warning("%s", one_line(f"progress artifact {action} failed, no "
                                                "further updates", error))
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


class ProgressBar(Callback):
    """A progress bar of the current epoch (rich), on stderr; it vanishes when training ends
    and log lines printed meanwhile appear above it."""

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self.progress: Any = None
        self.bar: Any = None

    def on_train_begin(self, info: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("  epoch {task.fields[epoch]}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[bpc]} bits/char"), TimeElapsedColumn(),
            console=Console(file=self.file or sys.stderr), transient=True)
        self.progress.start()
        resumed = info.get("resumed_from")
        self.bar = self.progress.add_task("training", total=info["batches_per_epoch"],
                                          epoch=resumed["epoch"] + 1 if resumed else 1,
                                          bpc="-")

    def on_batch_end(self, step: int, logs: dict[str, Any]) -> None:
        self.progress.update(self.bar, completed=logs["batch"], total=logs["batches"],
                             epoch=logs["epoch"], bpc=f"{logs['bits_per_char']:.3f}")

    def on_train_end(self, result: TrainResult) -> None:
        self.progress.stop()


def terminal_progress() -> list[Callback]:
    """[ProgressBar] when stderr is a terminal, else [] (logs and pipes stay clean)."""
    terminal = terminal_stderr()
    return [ProgressBar(terminal)] if terminal is not None else []
