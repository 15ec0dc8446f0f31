"""Where the feed buffer's files live: a local folder with a lock file, or an object store.

storage.feeds keeps the format and the exactly-once protocol; these two classes give it the
same four operations on either store: `read` a file with a token naming its content,
`write` (replace) and `append` given that token, and `locked()` for the writer's turn.

- `LocalFeedFiles`: ``<root>/feeds/``; the turn is the ``.lock`` file lock, appends are
  O_APPEND writes fsynced in place (the on-disk format of every existing store).
- `ObjectFeedFiles`: ``feeds/`` keys; every write is a compare-and-swap on the ETag the
  writer read, so two writers can never both extend the buffer from the same state. The
  turn is a lease object (``feeds/.lock``, created create-only, taken over by
  compare-and-swap once expired): it only saves losers from redoing their work; a writer
  whose lease expired fails its swap instead of writing twice.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from storage.backend import Backend, ObjectMissing, WriteConflict
from storage.errors import StorageError
from storage.fsutil import fsync_dir, replace_file
from storage.layout import FEEDS_DIR, FeedFiles
from storage.locks import LOCK_TIMEOUT_S

__all__ = ["LEASE_S", "LocalFeedFiles", "ObjectFeedFiles"]

LEASE_S = 60.0  # a poll holds the turn for seconds; a killed holder blocks others this long
Token = object  # what `read` saw: compared by the next write of the same file


class LocalFeedFiles:
    """The feed files in the folder `<root>/feeds`."""

    def __init__(self, root: str | Path) -> None:
        self.files = FeedFiles.of(root)
        self.where = str(self.files.items.parent)

    def read(self, name: str) -> tuple[bytes | None, Token]:
        try:
            return (self.files.items.parent / name).read_bytes(), None
        except FileNotFoundError:
            return None, None

    def write(self, name: str, data: bytes, token: Token) -> Token:
        # The lock holder is the only writer: no token to compare.
        replace_file(self.files.items.parent / name, data)
        return None

    def append(self, name: str, data: bytes, end: int, token: Token) -> Token:
        """Append `data` after the first `end` bytes (cutting off a killed writer's torn
        line), fsynced before returning."""
        path = self.files.items.parent / name
        created = not path.exists()
        with open(path, "ab") as handle:
            if handle.tell() > end:
                handle.truncate(end)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_dir(path.parent)
        return None

    @contextmanager
    def locked(self) -> Iterator[None]:
        directory = self.files.items.parent
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(directory.parent)
        # A new FileLock per use: threads of one process exclude each other as processes do.
        lock = FileLock(self.files.lock, timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout:
            raise StorageError(f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for lock "
                               f"{self.files.lock}") from None
        try:
            # replace_file's temporaries (.<name>.<owner>.<hex>.tmp) of a writer killed mid-way:
            # writers hold the lock, which we now hold, so none of them is live.
            for path in directory.glob(".*.tmp"):
                path.unlink(missing_ok=True)
            yield
        finally:
            lock.release()


class ObjectFeedFiles:
    """The feed files under ``feeds/`` of an object store."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.where = f"{backend.url}/{FEEDS_DIR}"
        self._lock_key = f"{FEEDS_DIR}/{FeedFiles.names()[-1]}"

    def _key(self, name: str) -> str:
        return f"{FEEDS_DIR}/{name}"

    def read(self, name: str) -> tuple[bytes | None, Token]:
        try:
            return self.backend.get(self._key(name))
        except ObjectMissing:
            return None, None

    def write(self, name: str, data: bytes, token: Token) -> Token:
        try:
            return self.backend.put(self._key(name), data, str(token) if token else "create")
        except WriteConflict:
            raise StorageError(f"{self.where}/{name} changed while this writer held the "
                               "feed lease (it expired?); nothing was written") from None

    def append(self, name: str, data: bytes, end: int, token: Token) -> Token:
        current, tag = self.read(name)
        if tag != token:
            raise StorageError(f"{self.where}/{name} changed while this writer held the "
                               "feed lease (it expired?); nothing was written")
        return self.write(name, (current or b"")[:end] + data, token)

    @contextmanager
    def locked(self) -> Iterator[None]:
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while not self._take(owner):
            if time.monotonic() > deadline:
                raise StorageError(f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for the "
                                   f"feed lease {self.backend.url}/{self._lock_key}")
            time.sleep(0.05 + secrets.randbelow(100) / 1000)
        try:
            yield
        finally:
            lease, _ = self.read(FeedFiles.names()[-1])
            if lease and json.loads(lease).get("owner") == owner:
                self.backend.delete(self._lock_key)

    def _take(self, owner: str) -> bool:
        lease = json.dumps({"owner": owner, "expires": time.time() + LEASE_S}).encode()
        try:
            self.backend.put(self._lock_key, lease, "create")
            return True
        except WriteConflict:
            pass
        try:
            data, tag = self.backend.get(self._lock_key)
        except ObjectMissing:
            return False  # released meanwhile: try again
        try:
            expired = float(json.loads(data)["expires"]) < time.time()
        except (ValueError, KeyError, TypeError):
            expired = True  # unreadable: a torn write cannot happen, so someone's garbage
        if not expired:
            return False
        try:
            self.backend.put(self._lock_key, lease, tag or "create")
            return True
        except WriteConflict:
            return False
