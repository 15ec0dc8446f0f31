"""The feed lease on an object store (storage.feed_files.ObjectFeedFiles): released only by
its holder, never taken early because of clock skew, never taken while renewed, and the
buffer's exactly-once appends under it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date, datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

import storage.feed_files as feed_files
from storage.backend import Backend, open_backend
from storage.errors import StorageError
from storage.feed_files import ObjectFeedFiles
from storage.feeds import BufferedItem, FeedState

LOCK_KEY = "feeds/.lock"


@pytest.fixture
def backend() -> Backend:
    return open_backend(f"memory://feed-files-{uuid.uuid4().hex}")


class FakeTime:
    """storage.feed_files' clock: `sleep` advances it (and calls `on_sleep`), so waiting
    for a lease costs no real time; `wall_offset` skews the wall clock only."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = time.time()
        self.wall_offset = 0.0
        self.on_sleep: Callable[[], None] | None = None

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall + self.wall_offset

    def sleep(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds
        if self.on_sleep is not None:
            self.on_sleep()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(feed_files, "time", fake)
    return fake


@pytest.fixture
def paused_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Holders do not renew by themselves: stands for a holder paused (GC, a suspended VM)."""
    monkeypatch.setattr(ObjectFeedFiles, "_keep_renewing", lambda self, lease: None,
                        raising=False)


def hold(files: ObjectFeedFiles) -> AbstractContextManager[None]:
    """Enter `files.locked()` and leave it entered (exit it with ``.__exit__``)."""
    held = files.locked()
    held.__enter__()
    return held


def release(held: AbstractContextManager[None]) -> None:
    held.__exit__(None, None, None)


def lease_record(backend: Backend) -> dict[str, Any] | None:
    try:
        return json.loads(backend.get(LOCK_KEY)[0])
    except StorageError:
        return None


def cannot_take_now(backend: Backend) -> bool:
    """Whether a newcomer fails to get the lease within half a lease (it is live)."""
    timeout = feed_files.LOCK_TIMEOUT_S
    feed_files.LOCK_TIMEOUT_S = feed_files.LEASE_S / 2
    try:
        with ObjectFeedFiles(backend).locked():
            return False
    except StorageError as error:
        assert "timed out" in str(error)
        return True
    finally:
        feed_files.LOCK_TIMEOUT_S = timeout


class Interleaved:
    """A backend that runs `before_release` just before the next write or delete of the
    lease: another host acting between the holder's last look and its release."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.url = inner.url
        self.before_release: Callable[[], None] | None = None

    def _interleave(self, key: str) -> None:
        hook, self.before_release = self.before_release, None
        if key == LOCK_KEY and hook is not None:
            hook()
        elif hook is not None:
            self.before_release = hook

    def get(self, key: str) -> tuple[bytes, str | None]:
        return self.inner.get(key)

    def head(self, key: str) -> Any:
        return self.inner.head(key)

    def put(self, key: str, data: bytes, mode: str = "overwrite") -> str | None:
        self._interleave(key)
        return self.inner.put(key, data, mode)

    def delete(self, key: str) -> None:
        self._interleave(key)
        self.inner.delete(key)


# -- (a) released only by its holder -----------------------------------------------------

def test_a_lapsed_holders_release_leaves_the_next_holders_lease(
        backend: Backend, clock: FakeTime, paused_holders: None) -> None:
    # A's lease lapses while it works; B takes it over between A's last look at the lease
    # and A's release (the old release read the lease, then deleted it unconditionally).
    interleaved = Interleaved(backend)
    a, b = ObjectFeedFiles(interleaved), ObjectFeedFiles(backend)  # type: ignore[arg-type]
    held_a = hold(a)
    b_holds: list[AbstractContextManager[None]] = []
    interleaved.before_release = lambda: b_holds.append(hold(b))
    start = clock.mono
    release(held_a)
    assert len(b_holds) == 1, "B took the lease over"
    assert clock.mono - start >= feed_files.LEASE_S  # only once A's lease had lapsed
    record = lease_record(backend)
    assert record is not None and not record.get("released"), "A's release removed B's lease"
    assert cannot_take_now(backend), "B's lease is no longer live"
    release(b_holds[0])
    assert lease_record(backend)["released"] is True  # type: ignore[index]
    start = clock.mono
    with ObjectFeedFiles(backend).locked():  # a released lease is taken at once
        assert clock.mono - start < 1


def test_a_holder_whose_lease_was_taken_over_writes_nothing(
        backend: Backend, clock: FakeTime, paused_holders: None) -> None:
    a, b = ObjectFeedFiles(backend), ObjectFeedFiles(backend)
    held_a = hold(a)
    _, token = a.read("items.jsonl")
    held_b = hold(b)  # after LEASE_S on B's clock
    assert b.write("items.jsonl", b"b\n", None) is not None
    with pytest.raises(StorageError, match="nothing was written|was not written"):
        a.append("items.jsonl", b"a\n", 0, token)
    assert not a.renew()  # the lease is B's: A learns it, and refuses to write again
    with pytest.raises(StorageError, match="taken over"):
        a.write("validators.json", b"{}\n", None)
    release(held_a)
    assert backend.get("feeds/items.jsonl")[0] == b"b\n"
    assert cannot_take_now(backend), "A's release removed B's lease"
    release(held_b)


# -- (b) clock skew ------------------------------------------------------------------------

@pytest.mark.parametrize("skew_s", [300.0, -300.0])
def test_clock_skew_neither_takes_a_live_lease_early_nor_delays_a_dead_one(
        backend: Backend, clock: FakeTime, paused_holders: None, skew_s: float) -> None:
    clock.wall_offset = skew_s  # A's wall clock is 5 minutes off
    held_a = hold(ObjectFeedFiles(backend))
    a_wrote_at = clock.time()
    clock.wall_offset = 0.0
    record = lease_record(backend)
    # B, whose own clock has not seen the lease unchanged for LEASE_S, must not take it.
    assert cannot_take_now(backend)
    # B takes it once the lease has stayed unchanged for LEASE_S on B's clock, not later.
    start = clock.mono
    with ObjectFeedFiles(backend).locked():
        waited = clock.mono - start
    assert feed_files.LEASE_S <= waited < feed_files.LEASE_S + 1
    release(held_a)
    # The lease says when A wrote it, by A's clock, for humans; no taker reads it.
    assert record is not None and record.get("ttl_s") == feed_files.LEASE_S
    written = datetime.fromisoformat(record["written_at"])
    assert abs(written.timestamp() - a_wrote_at) < 2


# -- (c) a renewed lease is never taken --------------------------------------------------

def test_a_renewed_lease_is_never_taken(backend: Backend, clock: FakeTime,
                                        paused_holders: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a = ObjectFeedFiles(backend)
    held_a = hold(a)
    tags: set[str | None] = set()
    last = [clock.mono]

    def a_renews_on_time() -> None:  # A, still working, renews every LEASE_S / 3
        if clock.mono - last[0] >= feed_files.LEASE_S / 3:
            last[0] = clock.mono
            assert a.renew()
            tags.add(backend.get(LOCK_KEY)[1])

    clock.on_sleep = a_renews_on_time
    monkeypatch.setattr(feed_files, "LOCK_TIMEOUT_S", 10 * feed_files.LEASE_S)
    with pytest.raises(StorageError, match="timed out"):
        with ObjectFeedFiles(backend).locked():
            pass
    assert len(tags) >= 25  # every renewal changed the ETag
    clock.on_sleep = None
    release(held_a)
    start = clock.mono
    with ObjectFeedFiles(backend).locked():  # released: taken at once
        assert clock.mono - start < 1


def test_locked_renews_the_lease_by_itself(backend: Backend,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Real time: a holder keeps its lease (renewed every LEASE_S / 3 by its thread) while a
    # newcomer waits twice as long as a lease for it in vain.
    monkeypatch.setattr(feed_files, "LEASE_S", 1.2)
    monkeypatch.setattr(feed_files, "LOCK_TIMEOUT_S", 2.5)
    tags = set()
    with ObjectFeedFiles(backend).locked():
        tags.add(backend.get(LOCK_KEY)[1])
        with pytest.raises(StorageError, match="timed out"):
            with ObjectFeedFiles(backend).locked():
                pass
        tags.add(backend.get(LOCK_KEY)[1])
    assert len(tags) == 2  # renewed meanwhile
    assert lease_record(backend)["released"] is True  # type: ignore[index]


# -- (d) exactly once under the lease ----------------------------------------------------

def _item(guid: str) -> BufferedItem:
    return BufferedItem(guid=guid, link=None, title=guid, headline=guid,
                        publish_date=date(2026, 1, 1), dated=True, source="feed",
                        fetched_at=datetime.now(timezone.utc))


def _store(backend: Backend) -> Any:
    return SimpleNamespace(backend=backend, versions=lambda kind: [],
                           aliases=lambda kind: {})


def test_two_threads_appending_never_lose_or_duplicate_an_item(backend: Backend) -> None:
    store = _store(backend)
    rounds = 8
    errors: list[BaseException] = []

    def poller(name: str) -> None:
        try:
            for n in range(rounds):
                # Each round offers one item of its own and one both pollers see.
                offered = [f"{name}-{n}", f"shared-{n}"]
                with FeedState(store).locked() as state:
                    have = {item.guid for item in state.items()}
                    state.append([_item(g) for g in offered if g not in have])
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=poller, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = FeedState(store)
    items = state.items()
    assert [item.seq for item in items] == list(range(1, len(items) + 1))
    expected = {f"{name}-{n}" for name in ("x", "y") for n in range(rounds)} | \
        {f"shared-{n}" for n in range(rounds)}
    assert sorted(item.guid for item in items) == sorted(expected)
    assert state.problems() == []


def _appends(store: Any, guids: list[str]) -> Iterator[None]:
    with FeedState(store).locked() as state:
        have = {item.guid for item in state.items()}
        yield
        state.append([_item(g) for g in guids if g not in have])


def test_a_slow_holder_keeps_the_lease_and_the_buffer_stays_exact(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # The finding's p7 case in real time: a poller slower than the lease (1.8 s against
    # 0.6 s) keeps its turn by renewing it; the other waits, then sees its items.
    monkeypatch.setattr(feed_files, "LEASE_S", 0.6)
    store = _store(backend)
    slow_has_read = threading.Event()
    results: list[str] = []

    def slow() -> None:
        steps = _appends(store, ["x", "y"])
        next(steps)
        slow_has_read.set()
        time.sleep(1.8)
        next(steps, None)
        results.append("slow appended")

    thread = threading.Thread(target=slow)
    thread.start()
    slow_has_read.wait()
    for _ in _appends(store, ["x"]):
        pass
    thread.join()
    assert results == ["slow appended"]
    assert [(item.seq, item.guid) for item in FeedState(store).items()] == [(1, "x"), (2, "y")]
