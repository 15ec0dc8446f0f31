"""The store's contract, run on three backends: a local directory, obstore's in-memory store,
and a real S3 API (moto's server on 127.0.0.1: real HTTP, ETags and conditional writes).

Every test goes through the public `Store` API only; the few that must reach below it
(corrupting a file, planting a crash's leftovers) do so through `damage`/`plant`.
"""

from __future__ import annotations

import inspect
import secrets
import threading
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from storage import AliasMovedError, CorruptVersionError, StorageError, Store
from storage.cache import FileCache
from storage.feeds import BUFFER_PARAM, BufferedItem

BACKENDS = ["local", "memory", "s3"]


@pytest.fixture(params=BACKENDS)
def any_store(request, tmp_path: Path, monkeypatch) -> Store:
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    if request.param == "local":
        return Store(tmp_path / "store")
    if request.param == "memory":
        return Store(f"memory://{secrets.token_hex(6)}")
    return Store(request.getfixturevalue("s3_store_url"))


def reopen(store: Store, cache: Path) -> Store:
    """The same store seen by another host: a fresh instance with its own empty cache."""
    return Store(store.root, backend=store.backend, cache=FileCache(cache))


def damage(store: Store, kind: str, version_id: str, rel: str, data: bytes) -> None:
    """Replace a published file's bytes behind the store's back."""
    if store.local:
        (store.local / kind / version_id / rel).chmod(0o644)
    store.backend.put(f"{kind}/{version_id}/{rel}", data)


def put(store: Store, kind: str = "datasets", files: dict[str, bytes] | None = None,
        **kwargs) -> str:
    with store.publish(kind, **kwargs) as staging:
        for rel, data in (files or {"data.bin": b"payload"}).items():
            (staging.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging.path / rel).write_bytes(data)
        staging.summary["n"] = len(files or {"data.bin": 1})
    return staging.id


def test_publish_makes_a_whole_version_visible(any_store: Store) -> None:
    files = {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)) * 1000}
    version = put(any_store, files=files, params={"lr": 0.1}, seed=7)
    assert any_store.resolve("datasets", "latest") == version
    assert any_store.resolve("datasets", version[:15]) == version
    manifest = any_store.manifest("datasets", "latest")
    assert (manifest["id"], manifest["params"], manifest["seed"]) == (version, {"lr": 0.1}, 7)
    assert sorted(manifest["files"]) == ["a.txt", "sub/b.bin"]
    directory = any_store.path("datasets", version)
    assert {rel: (directory / rel).read_bytes() for rel in files} == files
    assert [m["id"] for m in any_store.versions("datasets")] == [version]
    assert any_store.verify() == []


def test_a_failed_publish_leaves_nothing(any_store: Store) -> None:
    with pytest.raises(RuntimeError), any_store.publish("models") as staging:
        (staging.path / "w.bin").write_bytes(b"half")
        raise RuntimeError("training crashed")
    assert any_store.versions("models") == []
    assert any_store.aliases("models") == {}
    with pytest.raises(StorageError, match="no models versions yet"):
        any_store.resolve("models", "latest")
    assert any_store.verify() == []


def test_lineage_aliases_and_history(any_store: Store) -> None:
    data = put(any_store)
    model = put(any_store, "models", parents={"datasets": ["latest"]}, aliases=())
    assert any_store.manifest("models", model)["parents"] == {"datasets": [data]}
    assert any_store.aliases("models") == {}
    any_store.set_alias("models", "champion", model, reason="first")
    second = put(any_store, "models", aliases=())
    any_store.set_alias("models", "champion", second, reason="better")
    assert any_store.aliases("models") == {"champion": second}
    history = any_store.alias_history("models", "champion")
    assert [(h["id"], h["previous"], h["reason"]) for h in history] == [
        (model, None, "first"), (second, model, "better")]
    with pytest.raises(StorageError, match="unknown datasets"):
        put(any_store, "models", parents={"datasets": ["nope"]})


def test_set_alias_with_expect_is_a_compare_and_swap(any_store: Store) -> None:
    if "expect" not in inspect.signature(any_store.set_alias).parameters:
        pytest.skip("this store's set_alias has no expect yet (issue 18, champion CAS)")
    a, b = put(any_store, aliases=()), put(any_store, aliases=())
    any_store.set_alias("datasets", "champion", a, expect=None)
    with pytest.raises(AliasMovedError):
        any_store.set_alias("datasets", "champion", b, expect=None)
    with pytest.raises(AliasMovedError):
        any_store.set_alias("datasets", "champion", b, expect=b)
    any_store.set_alias("datasets", "champion", b, expect=a)
    assert any_store.aliases("datasets")["champion"] == b


def test_concurrent_alias_moves_all_land_in_the_history(any_store: Store) -> None:
    ids = [put(any_store, aliases=()) for _ in range(4)]
    threads = [threading.Thread(target=any_store.set_alias,
                                args=("datasets", "best", i, f"writer {n}"))
               for n, i in enumerate(ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    history = any_store.alias_history("datasets", "best")
    assert sorted(h["id"] for h in history) == sorted(ids)
    assert any_store.aliases("datasets")["best"] in ids


def test_publish_on_a_moved_alias_publishes_nothing(any_store: Store) -> None:
    first = put(any_store)
    put(any_store)  # moves "latest"
    with pytest.raises(AliasMovedError):
        put(any_store, expect={"latest": first})
    assert len(any_store.versions("datasets")) == 2
    assert put(any_store, expect={"latest": any_store.resolve("datasets", "latest")})


def test_gc_keeps_aliased_versions_and_their_parents(any_store: Store) -> None:
    old = put(any_store, aliases=())
    dataset = put(any_store, aliases=())
    model = put(any_store, "models", parents={"datasets": [dataset]}, aliases=("champion",))
    newer = [put(any_store, aliases=()) for _ in range(2)]
    assert any_store.gc(keep=1) == [("datasets", newer[0]), ("datasets", old)]
    assert len(any_store.versions("datasets")) == 4  # a dry run
    any_store.gc(keep=1, apply=True)
    assert [m["id"] for m in any_store.versions("datasets")] == [dataset, newer[1]]
    assert any_store.resolve("models", "champion") == model
    assert any_store.verify() == []


def test_corruption_is_reported_and_never_read(any_store: Store, tmp_path: Path) -> None:
    version = put(any_store, files={"a.txt": b"alpha"})
    damage(any_store, "datasets", version, "a.txt", b"tampered!")
    assert [(p.file, "size" in p.reason) for p in any_store.verify()] == [("a.txt", True)]
    with pytest.raises(CorruptVersionError):
        reopen(any_store, tmp_path / "other-host").path("datasets", version)


def test_work_dirs_survive_the_process_and_the_host(any_store: Store, tmp_path: Path) -> None:
    work = any_store.work_dir("train-abc")
    (work / "checkpoint").mkdir()
    (work / "checkpoint" / "state.json").write_text('{"epoch": 3}')
    any_store.save_work_dir(work)
    elsewhere = reopen(any_store, tmp_path / "other-host").work_dir("train-abc")
    assert (elsewhere / "checkpoint" / "state.json").read_text() == '{"epoch": 3}'
    any_store.remove_work_dir(work)
    assert not (reopen(any_store, tmp_path / "third").work_dir("train-abc") / "checkpoint").exists()


def item(n: int) -> BufferedItem:
    return BufferedItem(guid=f"urn:{n}", link=None, title=f"Item {n}", headline=f"item {n}",
                        publish_date=date(2024, 5, 1), dated=True, source="http://f.test/",
                        fetched_at=datetime(2024, 5, 1, tzinfo=timezone.utc))


def test_feed_writers_in_turn_store_each_item_once(any_store: Store) -> None:
    def poller(numbers: range) -> Callable[[], None]:
        def run() -> None:
            for n in numbers:
                with any_store.feeds.locked() as state:
                    stored = {i.guid for i in state.items()}
                    state.append([i for i in (item(n), item(n + 1)) if i.guid not in stored])
                    state.save_validators("http://f.test/", f'"{n}"', None)
        return run

    threads = [threading.Thread(target=poller(range(k, 12, 3))) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    items = any_store.feeds.items()
    assert [i.seq for i in items] == list(range(1, len(items) + 1))
    assert sorted(i.guid for i in items) == sorted({f"urn:{n}" for n in range(13)})
    assert any_store.verify() == []


def test_only_the_lineage_of_latest_publishes_feed_items(any_store: Store) -> None:
    with any_store.feeds.locked() as state:
        state.append([item(n) for n in range(1, 6)])
    first = put(any_store, params={BUFFER_PARAM: {"first": 1, "through": 2}})
    # A version a killed publisher made visible without moving "latest": not published.
    put(any_store, parents={"datasets": [first]}, aliases=(),
        params={BUFFER_PARAM: {"first": 3, "through": 5}})
    assert any_store.feeds.published_through() == 2
    put(any_store, parents={"datasets": [first]}, params={BUFFER_PARAM: {"through": 4}})
    assert [i.seq for i in any_store.feeds.pending()] == [5]
