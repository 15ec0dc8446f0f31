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
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from storage import StorageError, Store, default_root
from storage.layout import ModelFiles
from tasks.presets import CHAMPION

if TYPE_CHECKING:
    from charlm.quality import TrainingIndex

R = TypeVar("R")


def open_store(storage: str | Path | None) -> Store:
    """The store at `storage` (a directory or an object store URL such as s3://bucket/prefix),
    or the default root ($CHARLM_STORAGE or ./charlm-store)."""
    return Store(storage or default_root())


def model_files(storage: str | Path | None, model: str) -> ModelFiles:
    """The files of model version `model` (id or alias), checksums verified."""
    return ModelFiles.at(open_store(storage).path("models", model))


def current_champion(storage: str | Path | None) -> str | None:
    """The champion model's id; None when there is none yet or its alias is dangling."""
    store = open_store(storage)
    if CHAMPION not in store.aliases("models"):
        return None
    try:
        return store.resolve("models", CHAMPION)
    except StorageError:
        return None


def training_dataset(storage: str | Path | None, model: str) -> str | None:
    """The dataset version model `model` was trained on (None for an imported model)."""
    store = open_store(storage)
    datasets = store.manifest("models", store.resolve("models", model))["parents"].get(
        "datasets", [])
    return datasets[0] if datasets else None


def training_index(storage: str | Path | None, model: str) -> TrainingIndex:
    """The training headlines of the dataset `model` was trained on, indexed (headline and
    word sets); ValueError for a model that records no training dataset."""
    from charlm.quality import TrainingIndex
    from storage.datasets import read_texts

    dataset = training_dataset(storage, model)
    if dataset is None:
        raise ValueError(f"model {model} records no training dataset (imported?)")
    return TrainingIndex.from_texts(read_texts(open_store(storage).path("datasets", dataset),
                                               "train"))


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


def json_safe(value: Any) -> Any:
    """`value` with NaN floats as None, recursively: NaN is not JSON (a share with nothing
    to count becomes null)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-able parts (identifies a training run for resuming)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
