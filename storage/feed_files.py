"""The feed buffer's files as objects of the store's backend (a directory or an object store).

storage.feeds keeps the format and the exactly-once protocol; `ObjectFeedFiles` gives it four
operations on the ``feeds/`` keys of any backend: `read` a file with a token naming its
content (its ETag), `write` (replace) and `append` given that token, and `locked()` for the
writer's turn. Every write is a compare-and-swap on the ETag the writer read, so two writers
can never both extend the buffer from the same state. The turn is a lease object,
``feeds/.lock``, whose ETag is its token:

  * taken by a create-only write, by a compare-and-swap on a released lease (or the empty
    lock file of a store written before the lease existed), or by a
    compare-and-swap on a lease whose ETag this taker has seen unchanged for `LEASE_S` on
    its *own* monotonic clock. The holder's timestamps are never compared with the taker's
    clock, so hosts whose clocks disagree by minutes cannot take a live lease early (or
    wait minutes for a dead one);
  * renewed every ``LEASE_S / 3`` by its holder (a compare-and-swap that changes the ETag),
    so a live holder keeps it however long its work takes, and a killed one's lapses
    ``LEASE_S`` after its last renewal;
  * released only by its holder: a compare-and-swap against the ETag of the holder's own
    last write replaces it with a ``released`` record. If the swap fails the lease is
    someone else's now and is left alone.

  The lease only saves losers from redoing their work: a holder whose lease lapsed (paused
  past ``LEASE_S``, renewal lost) refuses to write once it knows, and otherwise fails its
  swap on the feed file instead of writing twice. The lease is JSON for humans: ``owner``
  (``<pid>@<host>/<random>``), ``ttl_s``, ``written_at`` (the holder's clock, never read
  by takers), ``renewal``.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from storage.backend import Backend, ObjectMissing, WriteConflict
from storage.errors import StorageError
from storage.layout import FEEDS_DIR, FeedFiles

__all__ = ["LEASE_S", "ObjectFeedFiles"]

# A live holder renews every LEASE_S / 3; a killed holder blocks the others this long after
# they first see its last renewal.
LEASE_S = 60.0
LOCK_TIMEOUT_S = 300.0  # waiting longer than this for the turn means something is wrong
Token = object  # what `read` saw: compared by the next write of the same file


class _Lease:
    """What a holder knows of the lease it holds (shared with its renewal thread)."""

    def __init__(self, owner: str, etag: str) -> None:
        self.owner = owner
        self.etag = etag  # of this holder's last write of the lease: its compare-and-swap token
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

    def _key(self, name: str) -> str:
        return f"{FEEDS_DIR}/{name}"

    def read(self, name: str) -> tuple[bytes | None, Token]:
        try:
            return self.backend.get(self._key(name))
        except ObjectMissing:
            return None, None

    def write(self, name: str, data: bytes, token: Token) -> Token:
        self._check_held(name)
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

    def _check_held(self, name: str) -> None:
        # The swap on the file's ETag is what makes a late writer harmless; this only fails
        # it sooner, and with the real reason, once a renewal found the lease taken over.
        lease = self._lease
        if lease is not None and lease.lost:
            raise StorageError(f"the feed lease {self.backend.url}/{self._lock_key} was taken "
                               f"over by another writer; {self.where}/{name} was not written")

    # -- the lease ---------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        lease = self._acquire()
        self._lease = lease
        # Renewed from a daemon thread rather than by the caller: the turn is held around
        # callers' code (a whole dataset publish, minutes) that has no place to call a
        # renew(), and a thread dies with its process, so a killed holder's lease still
        # lapses. A living but hung holder keeps it, as it would keep the local lock file.
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
        """Rewrite the held lease (a new ETag: takers start counting again); False when it
        was taken over meanwhile (this holder must not write again). `locked` renews every
        ``LEASE_S / 3`` by itself."""
        if self._lease is None:
            raise StorageError(f"the feed lease {self.backend.url}/{self._lock_key} is not "
                               "held here")
        return self._renew(self._lease)

    def _record(self, owner: str, **fields: object) -> bytes:
        written = datetime.fromtimestamp(time.time(), timezone.utc).isoformat(timespec="seconds")
        return json.dumps({"owner": owner, **fields, "written_at": written}).encode() + b"\n"

    def _lease_record(self, lease: _Lease) -> bytes:
        # The renewal count keeps every write's bytes distinct: a store whose ETag is a hash
        # of the content (S3) would otherwise give a renewal the ETag it replaces.
        return self._record(lease.owner, ttl_s=LEASE_S, renewal=lease.renewals)

    def _acquire(self) -> _Lease:
        lease = _Lease(f"{os.getpid()}@{os.uname().nodename}/{secrets.token_hex(6)}", "")
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        seen: tuple[str | None, float] | None = None  # (lease ETag, when we first saw it)
        while True:
            taken, seen = self._take(lease, seen)
            if taken is not None:
                return taken
            if time.monotonic() > deadline:
                raise StorageError(f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for the "
                                   f"feed lease {self.backend.url}/{self._lock_key}")
            time.sleep(0.05 + secrets.randbelow(100) / 1000)

    def _take(self, lease: _Lease, seen: tuple[str | None, float] | None
              ) -> tuple[_Lease | None, tuple[str | None, float] | None]:
        """One try: (the lease, taken) or (None, what we now know of the current one)."""
        record = self._lease_record(lease)
        try:
            return self._held(lease, self.backend.put(self._lock_key, record, "create")), None
        except WriteConflict:
            pass
        try:
            data, tag = self.backend.get(self._lock_key)
        except ObjectMissing:
            return None, None  # deleted meanwhile: create it on the next try
        if not _released(data):
            now = time.monotonic()
            # Only our own clock counts: the lease is dead once its ETag has stayed the same
            # for LEASE_S since we first saw it (a live holder rewrites it every LEASE_S / 3).
            if seen is None or seen[0] != tag:
                return None, (tag, now)
            if now - seen[1] < LEASE_S:
                return None, seen
        try:
            return self._held(lease, self.backend.put(self._lock_key, record, tag or "create")), \
                None
        except (WriteConflict, ObjectMissing):
            return None, None  # someone else was quicker

    def _held(self, lease: _Lease, etag: str | None) -> _Lease:
        if not etag:
            raise StorageError(f"store {self.backend.url} gave no ETag for {self._lock_key}: "
                               "it cannot hold the feed lease")
        lease.etag = etag
        return lease

    def _renew(self, lease: _Lease) -> bool:
        with lease.guard:
            if lease.lost:
                return False
            lease.renewals += 1
            try:
                etag = self.backend.put(self._lock_key, self._lease_record(lease), lease.etag)
            except (WriteConflict, ObjectMissing):
                lease.lost = True  # someone took it over (we were paused past LEASE_S)
                return False
            if not etag:
                lease.lost = True
                return False
            lease.etag = etag
            return True

    def _keep_renewing(self, lease: _Lease) -> None:
        while not lease.stop.wait(LEASE_S / 3):
            try:
                if not self._renew(lease):
                    return
            except StorageError:
                # A transient failure: try again at the next tick. Should the lease lapse
                # meanwhile and be taken, our next renewal fails and our writes' swaps fail.
                continue

    def _release(self, lease: _Lease) -> None:
        with lease.guard:
            if lease.lost:
                return
            lease.lost = True  # not ours any more, whatever happens next
            try:
                self.backend.put(self._lock_key, self._record(lease.owner, released=True),
                                 lease.etag)
            except (WriteConflict, ObjectMissing):
                pass  # taken over after ours lapsed: the lease is someone else's, leave it
            except StorageError:
                # Unreleased, it lapses LEASE_S after others first see it; the work done
                # under it is durable already, so the caller's operation did not fail.
                pass


def _released(data: bytes) -> bool:
    """Whether lease bytes are a released record. Anything unreadable counts as a live
    lease: it must then stay unchanged for LEASE_S, like a lease whose holder died. An
    empty one is the lock file of a store written before the lease: free."""
    if not data.strip():
        return True
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and record.get("released") is True
