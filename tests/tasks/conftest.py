"""Fixtures for the task tests: a store in tmp_path, fake versions.

Tasks are called through `.fn`, i.e. as plain functions without a Prefect run or server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from storage import Store


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def publish(storage: str) -> Callable[..., str]:
    """publish(kind, summary=None, **publish_kwargs) -> id of a new version with one file."""

    def _publish(kind: str, summary: dict | None = None, **kwargs) -> str:
        with Store(storage).publish(kind, **kwargs) as staging:
            (staging.path / "data.bin").write_bytes(b"payload")
            staging.summary.update(summary or {})
        return staging.id

    return _publish
