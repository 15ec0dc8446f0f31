"""Publishing, resolving, aliases, manifests, lineage and the errors users see."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np
import pytest

import storage.manifests
from storage import (
    MANIFEST,
    AliasMovedError,
    CorruptVersionError,
    StorageError,
    Store,
    code_version,
)
from storage.backend import DirectoryBackend


def test_store_does_no_io_until_used(tmp_path):
    store = Store(tmp_path / "never")
    assert store.local == tmp_path / "never" and store.root == str(tmp_path / "never")
    assert store.versions("models") == []
    assert store.aliases("models") == {}
    assert store.verify() == []
    assert store.gc(keep=0, apply=True) == []
    assert not (tmp_path / "never").exists()


def test_publish_creates_version_with_files_and_manifest(store):
    with store.publish("datasets", params={"lines": 10}, seed=7) as staging:
        assert staging.path.is_dir() and list(staging.path.iterdir()) == []
        assert staging.kind == "datasets"
        (staging.path / "train.txt").write_text("hello\n")
        (staging.path / "sub").mkdir()
        (staging.path / "sub" / "vocab.json").write_bytes(b"{}")
        staging.summary["lines"] = np.int64(10)  # numpy scalars are common in summaries
        staging.summary["loss"] = np.float32(0.5)
        # Nothing is visible before the block ends.
        assert store.versions("datasets") == []
        # A directory store stages in the version's own folder: no copy at the commit.
        assert staging.path == store.local / "datasets" / staging.id

    version_dir = store.path("datasets", staging.id)
    assert version_dir == store.local / "datasets" / staging.id
    assert (version_dir / "train.txt").read_text() == "hello\n"
    manifest = json.loads((version_dir / MANIFEST).read_text())
    assert manifest == store.manifest("datasets", "latest")
    assert manifest["kind"] == "datasets"
    assert manifest["id"] == staging.id
    assert manifest["format"] == 1
    assert manifest["params"] == {"lines": 10}
    assert manifest["seed"] == 7
    assert manifest["parents"] == {}
    assert manifest["summary"] == {"lines": 10, "loss": 0.5}
    assert manifest["code_version"] == code_version()
    assert manifest["files"] == {
        "sub/vocab.json": {
            "sha256": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
        },
        "train.txt": {
            "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            "size": 6,
        },
    }
    created = datetime.fromisoformat(manifest["created_at"])
    assert created.utcoffset().total_seconds() == 0
    assert created.strftime("%Y%m%d-%H%M%S-%f") == staging.id[:22]
    # Published files are read-only.
    assert not os.stat(version_dir / "train.txt").st_mode & 0o222


def test_versions_are_oldest_first_and_latest_moves(store, publish):
    ids = [publish("models", {"w": bytes([i])}) for i in range(4)]
    assert [m["id"] for m in store.versions("models")] == ids
    assert store.resolve("models", "latest") == ids[-1]
    assert store.aliases("models") == {"latest": ids[-1]}
    assert store.versions("datasets") == []


def test_resolve_accepts_id_alias_and_unique_prefix(store, publish):
    first = publish("models")
    second = publish("models", aliases=("latest", "champion"))
    assert store.resolve("models", first) == first
    assert store.resolve("models", "champion") == second
    assert store.resolve("models", second[:-3]) == second  # unique prefix
    with pytest.raises(StorageError, match="ambiguous"):
        store.resolve("models", first[:4])


def test_unknown_ref_error_names_it_and_lists_what_exists(store, publish):
    existing = publish("models", aliases=("latest", "champion"))
    with pytest.raises(StorageError) as info:
        store.resolve("models", "nonexistent")
    message = str(info.value)
    assert "'nonexistent'" in message and existing in message and "champion" in message
    with pytest.raises(StorageError, match="'20000101-000000-000000-abcdef'"):
        store.resolve("models", "20000101-000000-000000-abcdef")
    with pytest.raises(StorageError, match="no evaluations versions"):
        store.resolve("evaluations", "latest")
    for bad in ("../models", "Latest", "", "a/b"):
        with pytest.raises(StorageError, match="models"):
            store.path("models", bad)


def test_bad_kind_errors_name_the_kind(store):
    for call in (
        lambda: store.resolve("model", "latest"),
        lambda: store.versions("model"),
        lambda: store.aliases("model"),
        lambda: store.verify("model"),
        lambda: store.set_alias("model", "x", "y"),
        lambda: store.publish("model").__enter__(),
        lambda: store.publish("models", parents={"model": ["x"]}).__enter__(),
    ):
        with pytest.raises(StorageError, match="'model'"):
            call()
    assert not store.local.exists()


def test_set_alias_and_bad_alias_names(store, publish):
    first = publish("models")
    second = publish("models")
    store.set_alias("models", "champion", first)
    assert store.aliases("models") == {"champion": first, "latest": second}
    assert store.resolve("models", "champion") == first
    store.set_alias("models", "champion", second)
    assert store.resolve("models", "champion") == second
    with pytest.raises(StorageError, match="'Champion!'"):
        store.set_alias("models", "Champion!", first)
    with pytest.raises(StorageError, match="'2026'"):
        store.set_alias("models", "2026", first)
    with pytest.raises(StorageError, match="'20000101-000000-000000-abcdef'"):
        store.set_alias("models", "champion", "20000101-000000-000000-abcdef")
    with pytest.raises(StorageError, match="'latest'"):
        store.set_alias("models", "champion", "latest")  # takes an id, not a ref
    with pytest.raises(StorageError, match="'BAD'"):
        with store.publish("models", aliases=("latest", "BAD")):
            pytest.fail("publish must validate aliases before yielding")
    assert store.aliases("models") == {"champion": second, "latest": second}


def test_alias_changes_are_recorded_with_their_reason(store, publish):
    first = publish("models")
    second = publish("models")
    store.set_alias("models", "champion", first, reason="first model")
    store.set_alias("models", "champion", second, reason="by hand: better samples")
    store.set_alias("models", "showcase", first)
    history = store.alias_history("models", "champion")
    assert [(h["id"], h["previous"], h["reason"]) for h in history] == [
        (first, None, "first model"), (second, first, "by hand: better samples")]
    assert [h["alias"] for h in store.alias_history("models")] == [
        "champion", "champion", "showcase"]
    assert store.alias_history("datasets") == []
    # publishing moves `latest` without a history entry, and the history is bookkeeping
    publish("models")
    assert len(store.alias_history("models")) == 3
    assert store.verify() == []


def test_copy_in_adds_files_and_folders_to_the_version(store, tmp_path):
    (tmp_path / "logs" / "sub").mkdir(parents=True)
    (tmp_path / "logs" / "sub" / "events").write_bytes(b"e")
    (tmp_path / "weights.bin").write_bytes(b"w")
    with store.publish("models") as staging:
        staging.copy_in(tmp_path / "logs", "tensorboard")
        staging.copy_in(tmp_path / "weights.bin", "deep/weights.bin")
    files = store.manifest("models", staging.id)["files"]
    assert sorted(files) == ["deep/weights.bin", "tensorboard/sub/events"]


def test_publish_without_aliases_leaves_latest_alone(store, publish):
    first = publish("models")
    second = publish("models", aliases=())
    assert store.resolve("models", "latest") == first
    assert store.resolve("models", second) == second


def test_lineage_is_recorded_with_resolved_ids(store, publish):
    data = publish("datasets")
    model = publish("models", parents={"datasets": ["latest"]})
    evaluation = publish("evaluations", parents={"models": [model], "datasets": [data]})
    assert store.manifest("models", model)["parents"] == {"datasets": [data]}
    assert store.manifest("evaluations", evaluation)["parents"] == {
        "models": [model],
        "datasets": [data],
    }


def test_missing_parent_is_refused(store, publish):
    publish("datasets")
    with pytest.raises(StorageError, match="datasets 'champion'"):
        with store.publish("models", parents={"datasets": ["champion"]}):
            pytest.fail("must not yield")
    with pytest.raises(StorageError, match="list of ids"):
        with store.publish("models", parents={"datasets": "latest"}):
            pytest.fail("must not yield")
    assert store.versions("models") == []


def test_exception_inside_publish_leaves_nothing_and_keeps_aliases(store, publish):
    before = publish("models")
    with pytest.raises(RuntimeError, match="training diverged"):
        with store.publish("models", aliases=("latest", "champion")) as staging:
            (staging.path / "weights.bin").write_bytes(b"x" * 1000)
            raise RuntimeError("training diverged")
    assert not staging.path.exists()
    assert [m["id"] for m in store.versions("models")] == [before]
    assert store.aliases("models") == {"latest": before}
    assert os.listdir(store.local / "models") == [before]
    assert store.verify() == []


def test_publish_on_an_alias_that_moved_meanwhile_is_refused(store, publish):
    first = publish("datasets")
    with pytest.raises(AliasMovedError, match=f"moved to .* built on {first}"):
        with store.publish("datasets", parents={"datasets": [first]},
                           expect={"latest": first}) as staging:
            moved = publish("datasets")  # another writer, while this one was busy
            (staging.path / "rows.bin").write_bytes(b"rows")
    assert not staging.path.exists()
    assert [m["id"] for m in store.versions("datasets")] == [first, moved]
    assert store.resolve("datasets", "latest") == moved
    with store.publish("datasets", expect={"latest": moved}) as staging:  # still there: fine
        (staging.path / "rows.bin").write_bytes(b"rows")
    assert store.resolve("datasets", "latest") == staging.id
    with pytest.raises(AliasMovedError, match=r"\(unset\)"):
        with store.publish("models", expect={"champion": None}) as staging:
            store.set_alias("models", "champion", publish("models"))
    with pytest.raises(StorageError, match="alias name"):
        with store.publish("models", expect={"Bad Name": None}):
            pytest.fail("must not yield")


def test_caller_cannot_overwrite_manifest_or_store_symlinks(store, tmp_path):
    with pytest.raises(StorageError, match="reserved"):
        with store.publish("models") as staging:
            (staging.path / MANIFEST).write_text("{}")
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    with pytest.raises(StorageError, match="'link'"):
        with store.publish("models") as staging:
            (staging.path / "link").symlink_to(outside)
    assert store.versions("models") == []
    assert os.listdir(store.local / "models") == []


def test_unserializable_params_and_summary_are_user_errors(store):
    with pytest.raises(StorageError, match="params"):
        with store.publish("models", params={"f": object()}):
            pytest.fail("must not yield")
    with pytest.raises(StorageError, match="summary"):
        with store.publish("models") as staging:
            staging.summary["f"] = object()
    with pytest.raises(StorageError, match="seed"):
        with store.publish("models", seed="7"):
            pytest.fail("must not yield")
    assert store.versions("models") == []


def test_disk_full_while_copying_files_into_staging(store, publish, monkeypatch):
    before = publish("models")

    def full_disk_copy(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    source = store.local.parent / "big.bin"
    source.write_bytes(b"0" * 100)
    monkeypatch.setattr(shutil, "copyfile", full_disk_copy)  # what Staging.copy_in calls
    with pytest.raises(StorageError, match="disk full while publishing models") as info:
        with store.publish("models", aliases=("latest", "champion")) as staging:
            (staging.path / "partial.bin").write_bytes(b"0" * 10)
            staging.copy_in(source, "big.bin")  # the store's own copy meets the full disk
    assert isinstance(info.value.__cause__, OSError)
    assert not staging.path.exists()
    assert store.aliases("models") == {"latest": before}
    assert [m["id"] for m in store.versions("models")] == [before]


def test_disk_full_while_writing_manifest(store, publish, monkeypatch):
    before = publish("models")

    def full_disk_write(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(storage.manifests, "write_file", full_disk_write)
    with pytest.raises(StorageError, match="disk full while publishing models"):
        with store.publish("models") as staging:
            (staging.path / "weights.bin").write_bytes(b"w")
    assert not staging.path.exists()
    assert store.aliases("models") == {"latest": before}
    assert [m["id"] for m in store.versions("models")] == [before]
    assert os.listdir(store.local / "models") == [before]


def test_disk_full_while_committing_an_alias_move(store, publish, monkeypatch):
    first = publish("models")
    second = publish("models")
    entries = os.listdir(store.local / "_log")

    def full_disk_write(self, target, source, mtime_ns):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(DirectoryBackend, "_write_temp", full_disk_write)
        with pytest.raises(StorageError, match="disk full"):
            store.set_alias("models", "latest", first)
    # The move and its record are one entry, written whole or not at all: nothing moved,
    # nothing recorded, no temporary file left.
    assert store.aliases("models") == {"latest": second}
    assert store.alias_history("models") == []
    assert os.listdir(store.local / "_log") == entries


def test_corrupt_manifest_is_reported_by_manifest_and_versions(store, publish):
    version = publish("models")
    manifest_path = store.local / "models" / version / MANIFEST
    os.chmod(manifest_path, 0o644)
    manifest_path.write_text("{not json")
    with pytest.raises(CorruptVersionError, match=f"models.*{version}.*{MANIFEST}"):
        store.manifest("models", version)
    with pytest.raises(CorruptVersionError):
        store.versions("models")


def test_work_dirs_persist_until_removed(store, publish):
    work = store.work_dir("train-0123abcd")
    assert work == store.local / ".work" / "train-0123abcd" and work.is_dir()
    (work / "ckpt").write_text("epoch 3")
    assert store.work_dir("train-0123abcd") == work  # a rerun finds its checkpoints
    publish("models")
    store.clean_staging()
    store.gc(keep=0, apply=True)
    assert store.verify() == []
    assert (work / "ckpt").read_text() == "epoch 3"
    store.remove_work_dir(work)
    assert not work.exists()
    store.remove_work_dir("train-0123abcd")  # already gone: fine
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(StorageError, match="bad work directory name"):
            store.work_dir(bad)
    with pytest.raises(StorageError, match="not a work directory"):
        store.remove_work_dir(store.local / "models")


def test_set_alias_with_expect_is_a_compare_and_swap(store, publish):
    first, second, third = publish("models"), publish("models"), publish("models")
    store.set_alias("models", "champion", first, reason="first", expect=None)
    with pytest.raises(AliasMovedError, match=f"moved to {first} .* on \\(unset\\)"):
        store.set_alias("models", "champion", second, expect=None)  # exists already
    with pytest.raises(AliasMovedError, match=f"moved to {first} .* on {second}"):
        store.set_alias("models", "champion", third, expect=second)
    with pytest.raises(AliasMovedError, match=r"moved to \(unset\)"):
        store.set_alias("models", "showcase", third, expect=first)  # never set
    store.set_alias("models", "champion", second, reason="beat first", expect=first)
    assert store.aliases("models") == {"champion": second, "latest": third}
    # refused swaps leave no history: only the two that happened are recorded
    assert [(h["id"], h["reason"]) for h in store.alias_history("models")] == [
        (first, "first"), (second, "beat first")]


def test_of_many_threads_swapping_from_the_same_target_exactly_one_wins(store, publish):
    start = publish("models")
    store.set_alias("models", "champion", start)
    contenders = [publish("models") for _ in range(8)]
    barrier = threading.Barrier(len(contenders))

    def swap(model: str) -> bool:
        barrier.wait()
        try:
            store.set_alias("models", "champion", model, expect=start)
        except AliasMovedError:
            return False
        return True

    with ThreadPoolExecutor(len(contenders)) as pool:
        won = list(pool.map(swap, contenders))
    assert won.count(True) == 1
    assert store.resolve("models", "champion") == contenders[won.index(True)]
