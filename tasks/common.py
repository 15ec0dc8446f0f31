"""What every task needs: the store and a logger that reaches Prefect's UI.

Imports stay light (no TensorFlow) so stages like ingestion start fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

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
