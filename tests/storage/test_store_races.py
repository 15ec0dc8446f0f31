"""The interleavings that lost data or the champion before the commit log, each reproduced
deterministically: one writer is stopped at a named step (tests/storage/pausing.py) while
another runs, on a local directory and on obstore's memory store.

Findings (the issue "One store engine that never loses data"): 1 gc deletes a live upload,
2 gc races a promotion (and a publish's parent check), 5 a promotion goes unrecorded, 9 gc
removes the dataset a long training uses, 10 a taken-back commit is visible.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from storage import AliasMovedError, StorageError, Store
from storage.backend import open_backend
from tests.storage.pausing import Pausing, in_thread


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    if request.param == "local":
        return str(tmp_path / "store")
    return f"memory://{secrets.token_hex(6)}"


def hooked(root: str) -> tuple[Store, Pausing]:
    backend = Pausing(open_backend(root))
    return Store(root, backend=backend), backend


def put(store: Store, kind: str = "datasets", data: bytes = b"payload", **kwargs) -> str:
    with store.publish(kind, **kwargs) as staging:
        (staging.path / "data.bin").write_bytes(data)
        (staging.path / "more.bin").write_bytes(data * 3)
    return staging.id


def ids(store: Store, kind: str) -> list[str]:
    return [m["id"] for m in store.versions(kind)]


# -- 1: gc and a publish in progress ----------------------------------------------------

def test_gc_never_takes_the_files_of_a_publish_in_progress(root: str) -> None:
    """A publish paused between storing its files and its commit; gc runs meanwhile with
    the default retention (the upload is young): the publish commits whole."""
    writer, backend = hooked(root)
    gate = backend.pause("put", "_log/", thread="publisher")
    thread, outcome = in_thread("publisher", put, writer)
    gate.wait_reached()
    assert Store(root).gc(keep=0, apply=True) == []
    gate.release()
    thread.join(30)
    assert Store(root).resolve("datasets", "latest") == outcome[0]
    assert Store(root).verify() == []


def test_an_upload_gc_gave_up_can_never_commit(root: str) -> None:
    """The same pause, but gc judges the upload abandoned (a retention of 0 stands for an
    upload that outlasted the retention, or a gc host whose clock runs days ahead): gc
    commits that it gives the id up before deleting a file, so the publisher's commit is
    refused instead of committing a version with missing files."""
    reader = Store(root)
    base = put(reader)
    writer, backend = hooked(root)
    gate = backend.pause("put", "_log/", thread="publisher")
    thread, outcome = in_thread("publisher", put, writer)
    gate.wait_reached()
    reader.gc(keep=0, apply=True, retention_s=0)
    gate.release()
    thread.join(30)
    assert isinstance(outcome[0], StorageError) and "gave up" in str(outcome[0])
    assert Store(root).resolve("datasets", "latest") == base
    assert ids(Store(root), "datasets") == [base]
    assert Store(root).verify() == []
    assert [i.key for i in open_backend(root).list("datasets/") if base not in i.key] == []


# -- 2: gc and a promotion, gc and a publish's parent ------------------------------------

def test_a_promotion_between_gcs_plan_and_its_commit_keeps_the_champion(root: str) -> None:
    store = Store(root)
    model = put(store, "models", aliases=())
    put(store, "models")  # the newest: kept by keep=1
    gc_store, backend = hooked(root)
    gate = backend.pause("put", "_log/", thread="gc")
    thread, outcome = in_thread("gc", gc_store.gc, 1, True)
    gate.wait_reached()  # gc has planned to remove `model`
    store.set_alias("models", "champion", model, "promoted while gc planned")
    gate.release()
    thread.join(30)
    assert outcome[0] == []  # gc planned again on the promotion: nothing to remove
    assert Store(root).resolve("models", "champion") == model
    assert (Store(root).path("models", "champion") / "data.bin").read_bytes() == b"payload"
    assert Store(root).verify() == []


def test_a_parent_removed_before_the_commit_refuses_the_publish(root: str) -> None:
    store = Store(root)
    dataset = put(store, aliases=())
    put(store)
    writer, backend = hooked(root)
    gate = backend.pause("put", "_log/", thread="trainer")

    def train() -> str:
        return put(writer, "models", b"w", parents={"datasets": [dataset]})

    thread, outcome = in_thread("trainer", train)
    gate.wait_reached()
    assert ("datasets", dataset) in store.gc(keep=1, apply=True)
    gate.release()
    thread.join(30)
    assert isinstance(outcome[0], StorageError) and "was removed" in str(outcome[0])
    assert Store(root).verify() == []


# -- 5: a promotion and its record are one commit ---------------------------------------

def test_a_failed_promotion_moves_nothing_and_a_promotion_is_always_recorded(root: str) -> None:
    store = Store(root)
    first, second = put(store, "models"), put(store, "models")
    store.set_alias("models", "champion", first, "first")
    writer, backend = hooked(root)
    backend.fail("put", "_log/")
    with pytest.raises(StorageError, match="injected"):
        writer.set_alias("models", "champion", second, "beat the champion")
    assert Store(root).resolve("models", "champion") == first
    assert [h["id"] for h in Store(root).alias_history("models", "champion")] == [first]
    writer.set_alias("models", "champion", second, "beat the champion")
    history = Store(root).alias_history("models", "champion")
    assert [(h["id"], h["previous"], h["reason"]) for h in history] == [
        (first, None, "first"), (second, first, "beat the champion")]


# -- 9: a pinned dataset outlives gc ----------------------------------------------------

def test_gc_keeps_the_dataset_a_training_has_pinned(root: str) -> None:
    store = Store(root)
    dataset = put(store, aliases=())
    put(store)
    with store.pinned("datasets", dataset, "training abc") as pinned:
        assert pinned == dataset
        assert ("datasets", dataset) not in Store(root).gc(keep=0, apply=True)
        model = put(store, "models", parents={"datasets": [dataset]}, aliases=())
        assert Store(root).manifest("models", model)["parents"] == {"datasets": [dataset]}
    assert Store(root).pins() == []
    # Unpinned, unaliased and not the newest: both go now, the model first.
    assert Store(root).gc(keep=0, apply=True) == [("models", model), ("datasets", dataset)]


def test_a_lapsed_pin_no_longer_keeps_its_version(root: str) -> None:
    store = Store(root)
    dataset = put(store, aliases=())
    put(store)
    store.pin("datasets", dataset, "a job killed long ago", hours=-1)
    assert ("datasets", dataset) in store.gc(keep=1, apply=True)
    assert store.pins() == []


# -- 10: nothing visible and then withdrawn ----------------------------------------------

def test_a_publish_whose_expected_alias_moved_is_never_visible(root: str) -> None:
    store = Store(root)
    base = put(store)
    writer, backend = hooked(root)
    gate = backend.pause("put", "_log/", thread="publisher")

    def publish_on_base() -> str:
        return put(writer, "datasets", b"mine", expect={"latest": base})

    thread, outcome = in_thread("publisher", publish_on_base)
    gate.wait_reached()
    rival = put(store, "datasets", b"rival", expect={"latest": base})
    seen = ids(Store(root), "datasets")
    gate.release()
    thread.join(30)
    assert isinstance(outcome[0], AliasMovedError)
    assert seen == ids(Store(root), "datasets") == [base, rival]
    assert Store(root).resolve("datasets", "latest") == rival
    assert Store(root).verify() == []
    leftovers = {i.key.split("/")[1] for i in open_backend(root).list("datasets/")}
    assert leftovers == {base, rival}  # the loser's files went with it


def test_the_commit_that_adds_a_version_also_moves_its_aliases(root: str) -> None:
    """A version and its aliases are one entry: there is no moment, hence no kill, that
    leaves a committed version "latest" never pointed to."""
    store = Store(root)
    version = put(store, aliases=("latest", "showcase"))
    backend = open_backend(root)
    last = json.loads(backend.get(backend.list("_log/")[-1].key)[0])
    assert [(a["op"], a.get("name")) for a in last["actions"]] == [
        ("add", None), ("alias", "latest"), ("alias", "showcase")]
    assert {a["id"] for a in last["actions"]} == {version}
    assert Store(root).aliases("datasets") == {"latest": ids(store, "datasets")[0],
                                               "showcase": ids(store, "datasets")[0]}
