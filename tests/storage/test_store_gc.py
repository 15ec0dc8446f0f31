"""gc keeps aliased versions, the newest per kind and their whole lineage."""

from __future__ import annotations

import os

import pytest

from storage import StorageError, Store


def ids(store, kind):
    return [m["id"] for m in store.versions(kind)]


def test_gc_keeps_newest_aliases_and_lineage(store, publish):
    datasets = [publish("datasets", aliases=()) for _ in range(4)]
    # models[0] was trained on datasets[0] and is the champion; models[1..3] on datasets[1].
    models = [publish("models", parents={"datasets": [datasets[0]]}, aliases=("champion",))]
    models += [publish("models", parents={"datasets": [datasets[1]]}) for _ in range(3)]
    # An evaluation of the oldest non-champion model keeps it (and its dataset) if kept itself.
    evaluations = [publish("evaluations", parents={"models": [models[1]]})]
    evaluations += [publish("evaluations", parents={"models": [models[3]]}) for _ in range(2)]

    plan = store.gc(keep=1)
    expected = {
        # datasets: newest is datasets[3]; [0] is champion's parent, [1] parent of kept models.
        ("datasets", datasets[2]),
        # models: newest [3], champion [0]; [1] and [2] are only old.
        ("models", models[1]),
        ("models", models[2]),
        # evaluations: newest (and latest) is evaluations[2].
        ("evaluations", evaluations[0]),
        ("evaluations", evaluations[1]),
    }
    assert set(plan) == expected
    assert len(plan) == len(expected)

    # Dry run (the default) deletes nothing.
    assert len(ids(store, "datasets")) == 4 and len(ids(store, "models")) == 4

    assert set(store.gc(keep=1, apply=True)) == expected
    assert ids(store, "datasets") == [datasets[0], datasets[1], datasets[3]]
    assert ids(store, "models") == [models[0], models[3]]
    assert ids(store, "evaluations") == [evaluations[2]]
    assert store.verify() == []
    assert store.gc(keep=1) == []
    # Removed versions' files are gone too.
    for kind in ("datasets", "models", "evaluations"):
        assert sorted(os.listdir(store.local / kind)) == ids(store, kind)


def test_gc_keeps_transitive_lineage(store, publish):
    old_data = publish("datasets", aliases=())
    old_model = publish("models", parents={"datasets": [old_data]}, aliases=())
    generation = publish("generations", parents={"models": [old_model]}, aliases=("showcase",))
    publish("datasets", aliases=())
    publish("models", aliases=())
    assert store.gc(keep=1) == []
    assert store.resolve("generations", "showcase") == generation
    # Once the alias moves on, the chain goes.
    store.set_alias("generations", "showcase", publish("generations", aliases=()))
    assert set(store.gc(keep=0)) >= {("generations", generation), ("models", old_model),
                                     ("datasets", old_data)}


def test_gc_keep_zero_removes_everything_unaliased(store, publish):
    first = publish("models")
    second = publish("models", aliases=())
    assert store.gc(keep=0) == [("models", second)]
    assert store.gc(keep=0, apply=True) == [("models", second)]
    assert ids(store, "models") == [first]


def test_gc_rejects_bad_keep(store):
    with pytest.raises(StorageError, match="-1"):
        store.gc(keep=-1)


def test_gc_interrupted_half_way_leaves_consistent_store(store, publish, monkeypatch):
    data = publish("datasets", aliases=())
    model = publish("models", parents={"datasets": [data]}, aliases=())
    publish("datasets", aliases=())
    publish("models", aliases=())
    assert store.gc(keep=1) == [("models", model), ("datasets", data)]

    real_delete = Store._delete_prefix
    calls = []

    def delete_then_crash(self, prefix):
        calls.append(prefix)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between the two versions' files
        real_delete(self, prefix)

    monkeypatch.setattr(Store, "_delete_prefix", delete_then_crash)
    with pytest.raises(KeyboardInterrupt):
        store.gc(keep=1, apply=True)
    monkeypatch.setattr(Store, "_delete_prefix", real_delete)
    # Both removals were committed in one entry before any file went: no version is half
    # there, and the dataset's files are a leftover the next clean-up takes at once.
    assert store.verify() == []
    assert model not in ids(store, "models") and data not in ids(store, "datasets")
    assert (store.local / "datasets" / data).is_dir()
    assert store.clean_staging() == 1
    assert not (store.local / "datasets" / data).exists()
    assert store.gc(keep=1, apply=True) == []
    assert store.verify() == []
