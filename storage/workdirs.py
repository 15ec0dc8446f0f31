"""Work directories: persistent scratch space of resumable jobs, ``<root>/.work/<name>``.

Unlike staging, a work directory survives its process so a rerun with the same name can
pick up where a killed one stopped (training checkpoints, generation shards). It is not
versioned, verified or touched by gc or the staging clean-up; the job removes it once its
result is published. Names come from storage.layout (training_work_name, ...).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from storage.backend import ObjectMissing
from storage.errors import StorageError
from storage.layout import WORK_DIR

__all__ = ["MirroredWorkDirs", "check_work_name", "pack_work_dir", "remove_work_dir",
           "unpack_work_dir", "work_dir"]

_WORK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_work_name(name: object) -> str:
    if not isinstance(name, str) or _WORK_NAME_RE.fullmatch(name) is None or ".." in name:
        raise StorageError(
            f"bad work directory name {name!r}: use letters, digits, '.', '_' and '-'"
        )
    return name


def work_dir(root: Path, name: str) -> Path:
    """``<root>/.work/<name>``, created if missing."""
    path = root / WORK_DIR / check_work_name(name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_work_dir(root: Path, directory: str | Path) -> None:
    """Delete a work directory of the store at `root`, given as its name or its path."""
    work_root = root / WORK_DIR
    candidate = Path(directory)
    if candidate.is_absolute() or len(candidate.parts) > 1:
        if Path(os.path.abspath(candidate)).parent != work_root:
            raise StorageError(f"{str(directory)!r} is not a work directory of store {root}")
        name = candidate.name
    else:
        name = str(directory)
    shutil.rmtree(work_root / check_work_name(name), ignore_errors=True)


def pack_work_dir(directory: Path, skip: str = "") -> bytes:
    """A work directory as one tar archive (an object store keeps it as one object, so a
    copy is never half old, half new); the top-level entry `skip` is left out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for entry in sorted(directory.iterdir()):
            if entry.name != skip:
                archive.add(entry, arcname=entry.name)
    return buffer.getvalue()


def unpack_work_dir(data: bytes, directory: Path) -> None:
    """Extract an archive made by `pack_work_dir` into `directory` (nothing outside it)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(directory, filter="data")


RESTORED = ".restored"  # in a local copy: restored from the store; the local copy is newer


class MirroredWorkDirs:
    """Work directories of an object store (mixed into storage.object_store.ObjectStore):
    a local copy in the host cache, saved whole as ``.work/<name>.tar`` by
    `save_work_dir` and restored from it by `work_dir` on a host that has no copy, so a job
    killed on one machine resumes on another."""

    root: Any
    backend: Any
    cache: Any
    _key: str

    def work_dir(self, name: str) -> Path:
        """A local directory restored from the store's last saved copy (`save_work_dir`),
        so a job killed on one machine resumes on another."""
        local = self.cache.work_dir(self._key, check_work_name(name))
        marker = local / RESTORED
        if not marker.exists():
            shutil.rmtree(local, ignore_errors=True)
            local.mkdir(parents=True)
            try:
                unpack_work_dir(self.backend.get(f"{WORK_DIR}/{name}.tar")[0], local)
            except ObjectMissing:  # no saved copy yet: a fresh start
                pass
            marker.touch()
        return local

    def save_work_dir(self, work_dir: str | Path) -> None:
        """Upload the work directory whole, as one object: never half old, half new."""
        local = self._local_work(work_dir)
        self.backend.put(f"{WORK_DIR}/{local.name}.tar", pack_work_dir(local, skip=RESTORED))

    def remove_work_dir(self, work_dir: str | Path) -> None:
        local = self._local_work(work_dir)
        self.backend.delete(f"{WORK_DIR}/{local.name}.tar")
        shutil.rmtree(local, ignore_errors=True)

    def _local_work(self, work_dir: str | Path) -> Path:
        candidate = Path(work_dir)
        name = check_work_name(candidate.name)
        local = self.cache.work_dir(self._key, name)
        if len(candidate.parts) > 1 and Path(os.path.abspath(candidate)) != local:
            raise StorageError(f"{str(work_dir)!r} is not a work directory of store {self.root}")
        return local


