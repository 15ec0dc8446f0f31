"""Work directories: persistent scratch space of resumable jobs (`MirroredWorkDirs`, mixed
into storage.Store); a directory store's are ``<root>/.work/<name>``.

Unlike staging, a work directory survives its process so a rerun with the same name can
pick up where a killed one stopped (training checkpoints, generation shards). It is not
versioned, verified or touched by gc or the staging clean-up; the job removes it once its
result is published. Names come from storage.layout (training_work_name, ...).

On an object store (`MirroredWorkDirs`) the directory is a local copy in the host's cache,
saved whole as one object, ``.work/<name>.tar``, so a job killed on one host resumes on
another (docs/object-store.md, "What is guaranteed"). The local copy remembers the ETag of
the store copy it was restored from or last saved (`SAVED_AS`), so a job resumes from the
newest saved copy (`work_dir` replaces a local copy not in step with the store's, never
resuming from a host's old copy) and a save never overwrites a newer one (`save_work_dir`
is a compare-and-swap against that ETag, create-only when there is none). The saves of one
job on one host (generation shards finishing in several threads) take turns on a lock file
beside the local copy, so they never refuse each other.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from storage.backend import ObjectMissing, WriteConflict
from storage.errors import StorageError
from storage.fsutil import replace_file
from storage.layout import WORK_DIR

__all__ = ["MirroredWorkDirs", "check_work_name", "pack_work_dir", "unpack_work_dir"]

_WORK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# In a local copy, left out of its archive: the ETag of the store copy it was restored from
# or last saved as ("" when the store had none). No marker: not in step with the store (an
# interrupted restore, or a copy of an older release): restore it.
SAVED_AS = ".saved-etag"


def check_work_name(name: object) -> str:
    if not isinstance(name, str) or _WORK_NAME_RE.fullmatch(name) is None or ".." in name:
        raise StorageError(f"bad work directory name {name!r}: use letters, digits, '.', "
                           "'_' and '-'")
    return name


def _work_path(directory: str | Path, path_of: Callable[[str], Path], store: object) -> Path:
    """`path_of(name)` for the work directory `directory`, given as its name or as that path."""
    given = Path(directory)
    path = path_of(check_work_name(given.name))
    if len(given.parts) > 1 and Path(os.path.abspath(given)) != path:
        raise StorageError(f"{str(directory)!r} is not a work directory of store {store}")
    return path


def pack_work_dir(directory: Path, skip: str = "") -> bytes:
    """A work directory as one tar archive (an object store keeps it as one object, so a
    copy is never half old, half new); the top-level entry `skip` is left out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for entry in sorted(directory.iterdir()):
            if entry.name != skip:
                try:
                    archive.add(entry, arcname=entry.name)
                except FileNotFoundError:
                    pass  # renamed meanwhile by the job's other thread: the next save has it
    return buffer.getvalue()


def unpack_work_dir(data: bytes, directory: Path) -> None:
    """Extract an archive made by `pack_work_dir` into `directory` (nothing outside it)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(directory, filter="data")


class MirroredWorkDirs:
    """A store's work directories (module docstring): a directory store's own folders, or
    local copies mirrored to an object store."""

    root: Any
    backend: Any
    cache: Any
    _key: str
    local: Path | None = None  # a directory store's root

    def work_dir(self, name: str) -> Path:
        """A local directory holding the newest saved copy; a local copy already in step with
        the store is kept as it is (it may hold progress made after its last save)."""
        local = self._path_of(check_work_name(name))
        if self.local:
            local.mkdir(parents=True, exist_ok=True)
            return local
        key = _archive_key(name)
        info = self.backend.head(key)
        if _saved_as(local) == ((info.etag or "") if info else ""):
            return local
        # Not in step: the store's copy (or a fresh start) replaces it. The marker is
        # written last, so a restore killed half-way is redone.
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        etag = ""
        if info is not None:
            with suppress(ObjectMissing):  # removed meanwhile: a fresh start
                data, tag = self.backend.get(key)
                unpack_work_dir(data, local)
                etag = tag or ""
        replace_file(local / SAVED_AS, f"{etag}\n".encode())
        return local

    def save_work_dir(self, work_dir: str | Path) -> None:
        """Upload the work directory whole, by a compare-and-swap on the copy it was restored
        from or last saved as (module docstring): if another run saved meanwhile, a StorageError."""
        local = self._local_work(work_dir)
        if self.local:
            return  # it lives in the store already
        with _save_turn(local):
            saved_as = _saved_as(local)
            try:
                etag = self.backend.put(_archive_key(local.name),
                                        pack_work_dir(local, skip=SAVED_AS), saved_as or "create")
            except (WriteConflict, ObjectMissing):
                raise StorageError(f"work directory {local.name} of store {self.root} was saved "
                                   "(or removed) by another run meanwhile: this run's copy was "
                                   "not uploaded, so as not to overwrite a newer one; rerun the "
                                   "job to resume from the newest copy") from None
            replace_file(local / SAVED_AS, f"{etag or ''}\n".encode())

    def remove_work_dir(self, work_dir: str | Path) -> None:
        local = self._local_work(work_dir)
        if not self.local:
            self.backend.delete(_archive_key(local.name))
        shutil.rmtree(local, ignore_errors=True)
        (local.parent / f".{local.name}.save-lock").unlink(missing_ok=True)

    def _local_work(self, work_dir: str | Path) -> Path:
        return _work_path(work_dir, self._path_of, self.root)

    def _path_of(self, name: str) -> Path:
        return self.local / WORK_DIR / name if self.local else self.cache.work_dir(self._key, name)


@contextmanager
def _save_turn(local: Path) -> Iterator[None]:
    """Hold this host's lock on saving the local work copy `local` (a file beside it)."""
    from filelock import FileLock

    local.parent.mkdir(parents=True, exist_ok=True)
    # A new FileLock per call: flock(2) then excludes this process's other threads too.
    with FileLock(local.parent / f".{local.name}.save-lock"):
        yield


def _archive_key(name: str) -> str:
    return f"{WORK_DIR}/{name}.tar"


def _saved_as(local: Path) -> str | None:
    """The ETag a local copy is in step with ("" for none saved); None when it is not."""
    try:
        return (local / SAVED_AS).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
