"""Training checkpoints on disk: numbered arrays plus a JSON state, swapped in atomically.

A training run's work directory (Store.work_dir) holds a checkpoint (the arrays the trainer
handed over, in order, and its JSON-able state: position, history, fingerprint) and the
arrays of the best weights so far; file names in storage.layout (TrainingWorkFiles,
CheckpointFiles). A new checkpoint is written to ``checkpoint.tmp``, fsynced, then swapped
for the old one (``checkpoint`` -> ``checkpoint.old``, ``checkpoint.tmp`` -> ``checkpoint``),
so a process killed at any moment leaves a whole checkpoint under one of the two names. This
module stores arrays and JSON; it knows nothing of models (the trainer decides what the
arrays are).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storage.fsutil import fsync_dir, replace_file, write_file
from storage.layout import CheckpointFiles, TrainingWorkFiles


def _npz_bytes(arrays: Sequence[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return buffer.getvalue()


def _read_npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


class CheckpointDir:
    """The checkpoints of one training run, in `directory` (created on first save); `on_save`
    runs after each save (an object store uploads the work directory: Store.save_work_dir)."""

    def __init__(self, directory: str | Path, on_save: Callable[[], None] | None = None) -> None:
        self.directory = Path(directory)
        self.files = TrainingWorkFiles.at(self.directory)
        self.on_save = on_save

    def __str__(self) -> str:
        return str(self.directory)

    def save(self, arrays: Sequence[np.ndarray], state: dict[str, Any]) -> None:
        """Replace the checkpoint with `arrays` and `state`, atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        incoming = self.files.incoming_checkpoint
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir()
        written = CheckpointFiles.at(incoming)
        write_file(written.arrays, _npz_bytes(arrays))
        write_file(written.state, json.dumps(state, indent=1).encode())
        fsync_dir(incoming)
        current, previous = self.files.checkpoint, self.files.previous_checkpoint
        shutil.rmtree(previous, ignore_errors=True)
        if current.exists():
            current.rename(previous)
        incoming.rename(current)  # a kill before this line leaves checkpoint.old to resume
        fsync_dir(self.directory)
        shutil.rmtree(previous, ignore_errors=True)
        if self.on_save is not None:
            self.on_save()

    def load(self) -> tuple[list[np.ndarray], dict[str, Any]] | None:
        """The newest whole checkpoint (arrays, state), or None when there is none."""
        for folder in (self.files.checkpoint, self.files.previous_checkpoint):
            saved = CheckpointFiles.at(folder)
            if saved.state.exists() and saved.arrays.exists():
                return _read_npz(saved.arrays), json.loads(saved.state.read_text())
        return None

    def state(self) -> dict[str, Any] | None:
        """The newest checkpoint's state alone (cheap: no arrays are read)."""
        for folder in (self.files.checkpoint, self.files.previous_checkpoint):
            path = CheckpointFiles.at(folder).state
            if path.exists():
                return json.loads(path.read_text())
        return None

    def save_best(self, arrays: Sequence[np.ndarray]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        replace_file(self.files.best, _npz_bytes(arrays))
        if self.on_save is not None:
            self.on_save()

    def load_best(self) -> list[np.ndarray] | None:
        path = self.files.best
        return _read_npz(path) if path.exists() else None
