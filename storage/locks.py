"""The store's locks: one per kind, and one claim per staging directory.

Each kind has one lock file (``<root>/<kind>/.lock``). It is held briefly to make a version
visible and update aliases, and gc holds all of them while it decides what to drop, so a
publish can never commit a version whose parent gc is deleting. Each staging directory has
its own lock file (its *claim*), held by its publishing process for as long as the
directory exists, so that a cleaner can tell a live publish (lock held) from a killed one
(lock free) without trusting process ids, which get reused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from storage.errors import StorageError
from storage.ids import KINDS
from storage.layout import CLAIM_SUFFIX, LOCK_FILE

__all__ = ["LOCK_TIMEOUT_S", "KindLocks", "claim", "claim_file"]

# Kind locks are held for milliseconds; waiting minutes means something is badly wrong.
LOCK_TIMEOUT_S = 300.0


class KindLocks:
    """The kind locks of the store at `root`, one FileLock object per kind and process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, FileLock] = {}
        self._guard = threading.Lock()

    def _lock(self, kind: str) -> FileLock:
        with self._guard:
            if kind not in self._locks:
                kind_dir = self.root / kind
                kind_dir.mkdir(parents=True, exist_ok=True)
                # Thread-local (the default) so that threads of one process exclude each other.
                self._locks[kind] = FileLock(kind_dir / LOCK_FILE, timeout=LOCK_TIMEOUT_S)
            return self._locks[kind]

    @contextmanager
    def held(self, *kinds: str) -> Iterator[None]:
        """Hold the locks of ``kinds``, always taken in KINDS order so that gc (all kinds) and
        publish (one kind) cannot deadlock."""
        locks = [self._lock(kind) for kind in KINDS if kind in kinds]
        held: list[FileLock] = []
        try:
            for lock in locks:
                try:
                    lock.acquire()
                except Timeout:
                    raise StorageError(
                        f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for lock {lock.lock_file}"
                    ) from None
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                if lock.is_locked:
                    lock.release()


def claim_file(directory: Path) -> Path:
    """The lock file that claims staging directory `directory`."""
    return directory.with_name(directory.name + CLAIM_SUFFIX)


@contextmanager
def claim(directory: Path) -> Iterator[Path]:
    """Hold the claim of a staging directory for as long as it may exist.

    The lock is taken before the directory is created and dropped only after it has been
    renamed away or removed, so "lock free" reliably means "owner finished or died".
    """
    lock_path = claim_file(directory)
    lock = FileLock(lock_path, thread_local=False)
    lock.acquire(timeout=LOCK_TIMEOUT_S)
    try:
        yield directory
    finally:
        if not directory.exists():
            lock_path.unlink(missing_ok=True)
        lock.release()
