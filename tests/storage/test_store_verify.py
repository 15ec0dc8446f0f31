"""verify() and path(verify=True) catch every way a published version can rot."""

from __future__ import annotations

import os
import shutil

import pytest

from storage import MANIFEST, CorruptVersionError, Problem, Store


@pytest.fixture
def version(store, publish):
    """A datasets version with two files, plus a healthy model that depends on it."""
    version_id = publish("datasets", {"train.txt": b"a" * 100, "sub/valid.txt": b"b" * 50})
    publish("models", parents={"datasets": [version_id]})
    assert store.verify() == []
    return version_id


def writable(path):
    # Published files are read-only on purpose; the tests tamper with them deliberately.
    os.chmod(path, 0o644)
    return path


def only_problem(store: Store) -> Problem:
    problems = store.verify()
    assert len(problems) == 1, problems
    return problems[0]


def test_modified_file(store, version):
    target = writable(store.local / "datasets" / version / "train.txt")
    target.write_bytes(b"c" * 100)  # same size, different content
    problem = only_problem(store)
    assert problem == Problem("datasets", version, "train.txt", problem.reason)
    assert "sha256" in problem.reason
    with pytest.raises(CorruptVersionError, match=f"datasets.*{version}.*train.txt") as info:
        store.path("datasets", version)
    assert (info.value.kind, info.value.version_id, info.value.file) == (
        "datasets",
        version,
        "train.txt",
    )
    # Without verification the directory is still returned (e.g. for inspection).
    assert store.path("datasets", version, verify=False) == store.local / "datasets" / version


def test_truncated_file(store, version):
    target = writable(store.local / "datasets" / version / "sub" / "valid.txt")
    with open(target, "r+b") as handle:
        handle.truncate(10)
    problem = only_problem(store)
    assert (problem.id, problem.file) == (version, "sub/valid.txt")
    assert "size is 10 bytes, manifest says 50" in problem.reason
    with pytest.raises(CorruptVersionError, match="sub/valid.txt"):
        store.path("datasets", "latest")


def test_deleted_file(store, version):
    (store.local / "datasets" / version / "train.txt").unlink()
    problem = only_problem(store)
    assert (problem.id, problem.file, problem.reason) == (version, "train.txt", "missing")
    with pytest.raises(CorruptVersionError, match="train.txt: missing"):
        store.path("datasets", version)


def test_extra_file(store, version):
    (store.local / "datasets" / version / "sub" / "sneaky.txt").write_text("x")
    problem = only_problem(store)
    assert (problem.id, problem.file) == (version, "sub/sneaky.txt")
    assert "unexpected" in problem.reason
    with pytest.raises(CorruptVersionError, match="sneaky.txt"):
        store.path("datasets", version)


def test_missing_and_invalid_manifest(store, version):
    manifest = writable(store.local / "datasets" / version / MANIFEST)
    manifest.write_text('{"format": 1, "kind": "datasets"}')
    problem = only_problem(store)
    assert (problem.kind, problem.id, problem.file) == ("datasets", version, MANIFEST)
    manifest.unlink()
    problem = only_problem(store)
    assert (problem.file, problem.reason) == (MANIFEST, "missing")
    with pytest.raises(CorruptVersionError, match=MANIFEST):
        store.path("datasets", version)


def test_manifest_with_path_traversal_is_invalid(store, version):
    import json

    manifest_path = writable(store.local / "datasets" / version / MANIFEST)
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["../../escape"] = manifest["files"].pop("train.txt")
    manifest_path.write_text(json.dumps(manifest))
    problem = only_problem(store)
    assert "'../../escape'" in problem.reason


def test_a_version_deleted_behind_the_stores_back(store, version, publish):
    other = publish("datasets", aliases=("champion",))
    shutil.rmtree(store.local / "datasets" / other)
    problem = only_problem(store)
    assert problem == Problem("datasets", other, MANIFEST, "missing")
    with pytest.raises(CorruptVersionError, match=f"{other}.*missing"):
        store.path("datasets", "champion")


def test_missing_parent_and_stray_entry(store, version):
    shutil.rmtree(store.local / "datasets" / version)
    (store.local / "models" / "notes.txt").write_text("x")
    problems = store.verify()
    reasons = {(p.kind, p.id, p.file): p.reason for p in problems}
    assert reasons == {("datasets", version, MANIFEST): "missing",
                       ("models", "notes.txt", ""): "unexpected entry in the store"}
    assert store.verify("evaluations") == []


def test_quick_verify_reads_manifests_and_aliases_not_files(store, version):
    target = writable(store.local / "datasets" / version / "train.txt")
    target.write_bytes(b"c" * 100)  # only hashing finds this
    assert store.verify(quick=True) == []
    assert len(store.verify()) == 1
    os.remove(writable(store.local / "datasets" / version / MANIFEST))
    problems = store.verify(quick=True)
    assert {(p.kind, p.file) for p in problems} == {("datasets", MANIFEST)}
