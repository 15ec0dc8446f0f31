"""The feed buffer's files as objects of the store's backend (a directory or an object store).

storage.feeds keeps the format and the exactly-once protocol; `ObjectFeedFiles` gives it
`read` (a file and a token: its ETag), `write` and `append` (compare-and-swaps on that
token, so two writers never both extend the buffer from one state) and `locked()`, the
writer's turn: a lease object ``feeds/.lock`` (JSON for humans: ``owner``, ``ttl_s``,
``renewal``, ``written_at``), which is

- taken by a create-only write or a compare-and-swap on a released lease (or the empty lock
  file of an older store) or on one whose ETag the taker saw unchanged for `LEASE_S` on its
  *own* monotonic clock, so hosts whose clocks disagree never take a live lease early;
- renewed every ``LEASE_S / 3`` by its holder, so it keeps it however long its work takes;
- released only by its holder, by a compare-and-swap on the ETag of its own last write.

It only saves losers from redoing their work: a holder whose lease lapsed refuses to write
once it knows, and otherwise fails its swap on the feed file.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone

from storage.backend import Backend, ObjectMissing, WriteConflict
from storage.errors import StorageError
from storage.layout import FEEDS_DIR, FeedFiles

__all__ = ["LEASE_S", "ObjectFeedFiles"]

LEASE_S = 60.0  # renewed every LEASE_S / 3; a dead holder's blocks others this long
LOCK_TIMEOUT_S = 300.0  # waiting longer than this for the turn means something is wrong
Token = object  # what `read` saw: compared by the next write of the same file
Seen = tuple[str | None, float] | None  # (the lease's ETag, when a taker first saw it)


class _Lease:
    """What a holder knows of the lease it holds (shared with its renewal thread)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.etag = ""  # of this holder's last write of the lease: its compare-and-swap token
        self.renewals = 0
        self.lost = False  # not held any more (taken over, or released): never write again
        self.guard = threading.Lock()  # one lease write at a time (renewal thread, release)
        self.stop = threading.Event()


class ObjectFeedFiles:
    """The feed files under ``feeds/`` of an object store (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.where = f"{backend.url}/{FEEDS_DIR}"
        self._lock_key = f"{FEEDS_DIR}/{FeedFiles.names()[-1]}"
        self._lease: _Lease | None = None  # while this object holds the lease (`locked`)

    def read(self, name: str) -> tuple[bytes | None, Token]:
        with suppress(ObjectMissing):
            return self.backend.get(f"{FEEDS_DIR}/{name}")
        return None, None

    def write(self, name: str, data: bytes, token: Token) -> Token:
        # The swap below makes a late writer harmless; this fails it sooner, with the reason.
        if self._lease is not None and self._lease.lost:
            raise StorageError(f"the feed lease {self.backend.url}/{self._lock_key} was taken "
                               f"over by another writer; {self.where}/{name} was not written")
        try:
            return self.backend.put(f"{FEEDS_DIR}/{name}", data, str(token) if token else "create")
        except WriteConflict:
            raise self._changed(name) from None

    def append(self, name: str, data: bytes, end: int, token: Token) -> Token:
        current, tag = self.read(name)
        if tag != token:
            raise self._changed(name)
        return self.write(name, (current or b"")[:end] + data, token)

    def _changed(self, name: str) -> StorageError:
        return StorageError(f"{self.where}/{name} changed while this writer held the feed "
                            "lease (it expired?); nothing was written")

    @contextmanager
    def locked(self) -> Iterator[None]:
        lease = self._lease = self._acquire()
        # Renewed by a daemon thread: callers hold the turn around code that cannot call
        # renew() (a whole publish), and the thread dies with a killed holder's process.
        renewer = threading.Thread(target=self._keep_renewing, args=(lease,), daemon=True,
                                   name="feed-lease-renewal")
        renewer.start()
        try:
            yield
        finally:
            lease.stop.set()
            renewer.join()
            self._lease = None
            self._release(lease)

    def renew(self) -> bool:
        """Rewrite the held lease (a new ETag: takers start counting again), as `locked` does
        every ``LEASE_S / 3``; False when it was taken over (this holder must not write)."""
        if self._lease is None:
            raise StorageError(f"the feed lease {self.backend.url}/{self._lock_key} is not "
                               "held here")
        return self._renew(self._lease)

    def _record(self, lease: _Lease, released: bool = False) -> bytes:
        """The lease's bytes. The renewal count keeps every write's distinct: a store whose
        ETag hashes the content (S3) would otherwise give a renewal the ETag it replaces."""
        fields = {"released": True} if released else {"ttl_s": LEASE_S, "renewal": lease.renewals}
        written = datetime.fromtimestamp(time.time(), timezone.utc).isoformat(timespec="seconds")
        return json.dumps({"owner": lease.owner, **fields, "written_at": written}).encode() + b"\n"

    def _put_lease(self, lease: _Lease, mode: str) -> None:
        etag = self.backend.put(self._lock_key, self._record(lease), mode)
        if not etag:
            raise StorageError(f"store {self.backend.url} gave no ETag for {self._lock_key}: "
                               "it cannot hold the feed lease")
        lease.etag = etag

    def _acquire(self) -> _Lease:
        lease = _Lease(f"{os.getpid()}@{os.uname().nodename}/{secrets.token_hex(6)}")
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        seen: Seen = None
        while True:
            seen = self._take(lease, seen)
            if lease.etag:
                return lease
            if time.monotonic() > deadline:
                raise StorageError(f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for the "
                                   f"feed lease {self.backend.url}/{self._lock_key}")
            time.sleep(0.05 + secrets.randbelow(100) / 1000)

    def _take(self, lease: _Lease, seen: Seen) -> Seen:
        """One try at taking the lease (which sets `lease.etag`); what we now know of it."""
        with suppress(WriteConflict):
            self._put_lease(lease, "create")
            return None
        try:
            data, tag = self.backend.get(self._lock_key)
        except ObjectMissing:
            return None  # deleted meanwhile: create it on the next try
        if not _released(data):
            # Dead once its ETag stayed the same for LEASE_S since we first saw it, by our clock.
            if seen is None or seen[0] != tag:
                return tag, time.monotonic()
            if time.monotonic() - seen[1] < LEASE_S:
                return seen
        with suppress(WriteConflict, ObjectMissing):  # failing when someone else was quicker
            self._put_lease(lease, tag or "create")
        return None

    def _renew(self, lease: _Lease) -> bool:
        with lease.guard:
            if not lease.lost:
                lease.renewals += 1
                try:
                    self._put_lease(lease, lease.etag)
                except (WriteConflict, ObjectMissing):
                    lease.lost = True  # someone took it over (we were paused past LEASE_S)
            return not lease.lost

    def _keep_renewing(self, lease: _Lease) -> None:
        while not lease.stop.wait(LEASE_S / 3):
            # A failure is transient: try again at the next tick. Should the lease lapse
            # meanwhile and be taken, our next renewal fails and our writes' swaps fail.
            with suppress(StorageError):
                if not self._renew(lease):
                    return

    def _release(self, lease: _Lease) -> None:
        with lease.guard:
            if lease.lost:
                return
            lease.lost = True  # not ours any more, whatever happens next
            # A conflict: it lapsed and is someone else's now. Anything else: it lapses; the
            # work done under it is durable already, so the caller's operation did not fail.
            with suppress(StorageError):
                self.backend.put(self._lock_key, self._record(lease, released=True), lease.etag)


def _released(data: bytes) -> bool:
    """Whether lease bytes are a released record, or empty (the lock file of a store older
    than the lease). Anything unreadable is live: taken once unchanged for LEASE_S."""
    if not data.strip():
        return True
    with suppress(ValueError):  # UnicodeDecodeError included
        record = json.loads(data)
        return isinstance(record, dict) and record.get("released") is True
    return False
