"""What every task needs: the store, a logger that reaches Prefect's UI, and `run_task`.

Operations (training with the champion decision, generation, comparison, the demo) are
plain functions that call tasks through `run_task`: inside a flow run each step becomes a
Prefect task run (visible in the UI); from the command line the same step runs as a plain
function call, without a Prefect server.

Imports stay light (no TensorFlow) so stages like ingestion start fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, TypeVar

from storage import Store, default_root
from storage.layout import ModelFiles

R = TypeVar("R")


def open_store(storage: str | Path | None) -> Store:
    """The store at `storage`, or the default root ($CHARLM_STORAGE or ./charlm-store)."""
    return Store(Path(storage) if storage else default_root())


def model_files(storage: str | Path | None, model: str) -> ModelFiles:
    """The files of model version `model` (id or alias), checksums verified."""
    return ModelFiles.at(open_store(storage).path("models", model))


def in_prefect_run() -> bool:
    """True inside a flow or task run (artifacts need one to attach to; the CLI has none)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def run_task(step: Any, *args: Any, **kwargs: Any) -> Any:
    """Run the Prefect task `step`: a task run inside a flow run, a plain call elsewhere."""
    if in_prefect_run():
        return step(*args, **kwargs)
    return step.fn(*args, **kwargs)


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
