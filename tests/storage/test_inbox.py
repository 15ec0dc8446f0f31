"""The inbox (storage.inbox) on a directory store and on an object store (in memory): files
are listed, claimed by exactly one run, read locally and archived once; stale claims are
taken over."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from storage import StorageError, Store
from storage.cache import FileCache
from storage.inbox import check_csv_name


@pytest.fixture(params=["directory", "memory"])
def store(request, tmp_path: Path) -> Store:
    cache = FileCache(tmp_path / "cache")
    if request.param == "directory":
        return Store(tmp_path / "store", cache=cache)
    return Store(f"memory://inbox-{uuid.uuid4().hex}", cache=cache)


def age(store: Store, key: str, seconds: float) -> None:
    """Make a directory store's object at `key` look `seconds` old (by its file's mtime)."""
    then = time.time() - seconds
    os.utime(store.local / key, (then, then))


def test_waiting_lists_top_level_csvs_oldest_first(store: Store) -> None:
    inbox = store.inbox
    inbox.put("b.csv", b"publish_date,headline_text\n")
    time.sleep(0.01)
    inbox.put("a.csv", b"publish_date,headline_text\n")
    store.backend.put("inbox/notes.txt", b"x")
    store.backend.put("inbox/.c.csv", b"x")  # hidden: being uploaded under another name
    store.backend.put("inbox/processed/x/d.csv", b"x")
    assert inbox.waiting() == ["b.csv", "a.csv"]


def test_a_directory_stores_inbox_is_its_inbox_folder(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    folder = tmp_path / "store" / "inbox"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("publish_date,headline_text\n")  # dropped by hand
    inbox = store.inbox
    assert inbox.directory == folder and inbox.waiting() == ["a.csv"]
    claim = inbox.claim("a.csv")
    assert claim is not None and inbox.local_copy("a.csv") == folder / "a.csv"
    where = inbox.archive(claim, "20260101-000000-000000-abcdef")
    assert where == str(folder / "processed" / "20260101-000000-000000-abcdef" / "a.csv")
    assert Path(where).read_text() == "publish_date,headline_text\n"
    assert not (folder / "a.csv").exists() and not (folder / ".claims").exists()


def test_an_object_stores_file_is_read_from_a_download(store: Store) -> None:
    inbox = store.inbox
    inbox.put("a.csv", b"publish_date,headline_text\n2020-01-01,x\n")
    local = inbox.local_copy("a.csv")
    assert local.read_bytes() == b"publish_date,headline_text\n2020-01-01,x\n"
    inbox.discard(local)
    assert local.exists() == bool(store.local)  # a directory store's own file stays


def test_one_claim_per_file_however_many_runs_try(store: Store) -> None:
    inbox = store.inbox
    names = [f"f{i}.csv" for i in range(6)]
    for name in names:
        inbox.put(name, b"publish_date,headline_text\n")
    start = threading.Barrier(8)
    won: list[str] = []

    def run(k: int) -> None:
        start.wait()
        for name in inbox.waiting():
            claim = inbox.claim(name, f"run {k}")
            if claim is not None:
                won.append(name)
                inbox.archive(claim, None)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == names  # each claimed (and archived) by exactly one run
    assert sorted(inbox.archived()) == [f"inbox/processed/unchanged/{n}" for n in names]
    assert inbox.waiting() == [] and store.backend.list("inbox/.claims/") == []


def test_a_held_claim_blocks_and_a_released_one_does_not(store: Store) -> None:
    inbox = store.inbox
    inbox.put("a.csv", b"x\n")
    first = inbox.claim("a.csv", "first")
    assert first is not None and inbox.claim("a.csv", "second") is None
    body = json.loads(store.backend.get("inbox/.claims/a.csv")[0])
    assert body["token"] == first.token and "first" in body["by"]
    inbox.release(first)
    second = inbox.claim("a.csv", "second")
    assert second is not None and inbox.holds(second) and not inbox.holds(first)


def test_a_stale_claim_is_taken_over_and_its_holder_archives_nothing(store: Store) -> None:
    inbox = store.inbox
    inbox.put("a.csv", b"x\n")
    killed = inbox.claim("a.csv", "killed run")
    assert killed is not None
    if store.local:
        age(store, "inbox/.claims/a.csv", 2 * 3600)  # older than the hour's lease
        taker = inbox.claim("a.csv", "next run")
    else:  # an object's time is the server's: a short lease instead
        time.sleep(0.05)
        taker = inbox.claim("a.csv", "next run", lease_s=0.01)
    assert taker is not None and inbox.holds(taker)
    assert inbox.claim("a.csv", "third run") is None  # the taker's claim is fresh
    with pytest.raises(StorageError, match="a.csv.*taken over by another run"):
        inbox.archive(killed, None)  # woke up after the lease: the taker archives it
    inbox.release(killed)  # no longer its claim: nothing happens
    assert inbox.holds(taker)
    assert inbox.archive(taker, "20260101-000000-000000-abcdef") is not None
    assert inbox.archive(killed, None) is None  # archived already: nothing to do
    assert inbox.waiting() == []


def test_a_claim_on_a_file_archived_meanwhile_is_let_go(store: Store) -> None:
    """A run listed the file, another claimed and archived it, then the first claims."""
    inbox = store.inbox
    inbox.put("a.csv", b"x\n")
    claim = inbox.claim("a.csv")
    assert claim is not None
    inbox.archive(claim, None)
    assert inbox.claim("a.csv") is None
    assert store.backend.list("inbox/.claims/") == []


def test_archiving_never_overwrites_and_a_retry_does_nothing(store: Store) -> None:
    inbox = store.inbox
    for content in (b"first\n", b"second\n", b"third\n"):
        inbox.put("a.csv", content)
        claim = inbox.claim("a.csv")
        assert claim is not None
        inbox.archive(claim, None)
        assert inbox.archive(claim, None) is None  # a retry after it worked
    archived = inbox.archived("unchanged")
    assert archived == [f"inbox/processed/unchanged/{n}" for n in ("a.1.csv", "a.2.csv",
                                                                    "a.csv")]
    assert Counter(store.backend.get(k)[0] for k in archived) == {
        b"first\n": 1, b"second\n": 1, b"third\n": 1}
    claim = inbox.claim("a.csv")
    assert claim is None  # nothing waits


@pytest.mark.parametrize("name", ["a.txt", ".a.csv", "x/a.csv", "", " a.csv", None])
def test_bad_names_are_refused(name) -> None:
    with pytest.raises(StorageError, match="bad inbox file name"):
        check_csv_name(name)
