"""Fixtures shared by the storage tests: a store in tmp_path, a quick way to publish, and
child Python processes that use the store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from storage import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def publish(store: Store) -> Callable[..., str]:
    """publish(kind, files={relpath: bytes}, **publish_kwargs) -> new version id."""

    def _publish(kind: str, files: dict[str, bytes] | None = None, **kwargs) -> str:
        files = {"data.bin": b"payload"} if files is None else files
        with store.publish(kind, **kwargs) as staging:
            for rel, data in files.items():
                target = staging.path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            staging.summary["n_files"] = len(files)
        return staging.id

    return _publish


@pytest.fixture
def spawn_python() -> Callable[..., subprocess.Popen]:
    """spawn_python(code, *args) -> a child `python -c code args` (stdout piped, text) that
    imports this checkout's packages."""
    repo = Path(__file__).resolve().parents[2]

    def spawn(code: str, *args: object) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=repo,
                                env={**os.environ, "PYTHONPATH": str(repo)},
                                stdout=subprocess.PIPE, text=True)

    return spawn
