"""The feed state files: the append-only item buffer, the published mark, validators, verify."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timezone

import pytest

from storage import StorageError, Store
from storage.feeds import BUFFER_PARAM, BufferedItem, FeedState
from storage.layout import FeedFiles

WHEN = datetime(2024, 5, 1, 2, 3, 4, tzinfo=timezone.utc)


def item(n: int, source: str = "http://feed.test/a.xml") -> BufferedItem:
    return BufferedItem(guid=f"urn:item:{n}", link=f"http://site.test/{n}", title=f"Item {n}!",
                        headline=f"item {n}", publish_date=date(2024, 5, 1), dated=n % 2 == 0,
                        source=source, fetched_at=WHEN)


def test_append_numbers_items_and_reads_them_back(store: Store) -> None:
    with store.feeds.locked() as state:
        first = state.append([item(1), item(2)])
        second = state.append([item(3)])
        assert state.append([]) == []
    assert [i.seq for i in first + second] == [1, 2, 3]
    assert store.feeds.items() == first + second
    assert store.feeds.items()[2].fetched_at == WHEN
    path = FeedFiles.of(store.root).items
    assert path.read_bytes().count(b"\n") == 3
    assert json.loads(path.read_bytes().splitlines()[0])["headline"] == "item 1"


def test_changes_need_the_lock(store: Store) -> None:
    with pytest.raises(AssertionError, match="needs the lock"):
        store.feeds.append([item(1)])
    with pytest.raises(AssertionError, match="needs the lock"):
        store.feeds.save_validators("http://a.test/", '"x"', None)


def test_a_torn_last_line_is_ignored_then_cut_off(store: Store) -> None:
    with store.feeds.locked() as state:
        state.append([item(1)])
    path = FeedFiles.of(store.root).items
    with open(path, "ab") as handle:  # a writer killed half-way through its line
        handle.write(b'{"seq":2,"guid":"urn:item:2","li')
    assert [i.seq for i in store.feeds.items()] == [1]
    assert store.verify() == []  # recoverable, not corruption
    with store.feeds.locked() as state:
        [again] = state.append([item(2)])
    assert again.seq == 2
    assert [i.guid for i in store.feeds.items()] == ["urn:item:1", "urn:item:2"]
    assert path.read_bytes().endswith(b"\n") and b'"li{' not in path.read_bytes()


def test_corrupt_lines_are_errors_and_verify_reports_them(store: Store) -> None:
    with store.feeds.locked() as state:
        state.append([item(1), item(2)])
    path = FeedFiles.of(store.root).items
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"not json\n" + lines[1])
    with pytest.raises(StorageError, match="line 2 is not a feed item"):
        store.feeds.items()
    [problem] = store.verify()
    assert problem.kind == "feeds" and problem.file == "items.jsonl"
    assert "line 2" in problem.reason


def test_verify_reports_a_guid_stored_twice(store: Store) -> None:
    with store.feeds.locked() as state:
        state.append([item(1), item(1)])  # storage does not dedup: its callers must
    [problem] = store.verify()
    assert "stored twice" in problem.reason and "urn:item:1" in problem.reason


def test_published_through_is_the_mark_or_a_manifest_whichever_is_later(
        store: Store, publish) -> None:
    state = store.feeds
    assert state.published_through() == 0
    with state.locked() as held:
        held.append([item(n) for n in range(1, 6)])
        held.mark_published(2, "20240501-000000-000000-abcdef")
        held.mark_published(1, "ignored: never moves back")
    assert state.published_through() == 2
    assert [i.seq for i in state.pending()] == [3, 4, 5]
    # A dataset version made from the buffer whose mark was never written (a kill):
    publish("datasets", params={BUFFER_PARAM: {"first": 3, "through": 4}})
    assert state.published_through() == 4
    assert [i.seq for i in state.pending()] == [5]


def test_validators_per_url(store: Store) -> None:
    state = store.feeds
    assert state.validators("http://a.test/feed") == (None, None)
    with state.locked() as held:
        held.save_validators("http://a.test/feed", '"v1"', "Wed, 01 May 2024 00:00:00 GMT")
        held.save_validators("http://b.test/feed", None, "Thu, 02 May 2024 00:00:00 GMT")
    assert state.validators("http://a.test/feed") == ('"v1"', "Wed, 01 May 2024 00:00:00 GMT")
    assert state.validators("http://b.test/feed") == (None, "Thu, 02 May 2024 00:00:00 GMT")
    FeedFiles.of(store.root).validators.write_text("{broken")
    assert [p.file for p in store.verify()] == ["validators.json"]


def test_a_killed_writers_temporary_is_invisible_and_gc_removes_it(store: Store) -> None:
    with store.feeds.locked() as state:
        state.save_validators("http://a.test/feed", '"v1"', None)
    leftover = FeedFiles.of(store.root).validators.with_name(
        ".validators.json.999.0123456789abcdef.tmp")
    leftover.write_text("{}")
    assert store.feeds.validators("http://a.test/feed") == ('"v1"', None)
    assert store.verify() == []
    store.gc(apply=True)
    assert leftover.exists()  # young: maybe a write in progress
    store.gc(apply=True, retention_s=0)
    assert not leftover.exists()


def test_the_lock_excludes_other_threads(store: Store) -> None:
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        inside.wait(5)
        with FeedState(store).locked():
            order.append("other")

    thread = threading.Thread(target=other)
    thread.start()
    with store.feeds.locked():
        inside.set()
        thread.join(0.5)  # it must be waiting for us
        order.append("first")
    thread.join(5)
    assert order == ["first", "other"]
