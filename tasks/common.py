"""What every task needs: the store, a logger that reaches Prefect's UI, epoch logging."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from charlm.train import Callback
from storage import Store, default_root


def open_store(storage: str | Path | None) -> Store:
    """The store at `storage`, or the default root ($CHARLM_STORAGE or ./charlm-store)."""
    return Store(Path(storage) if storage else default_root())


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run, the `charlm` logger elsewhere (the CLI)."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("charlm")


def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-able parts (identifies a training run for resuming)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class LogEpochs(Callback):
    """One log line per epoch (Keras' progress bars never reach the Prefect UI)."""

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
