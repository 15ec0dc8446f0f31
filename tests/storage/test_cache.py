"""The host cache on its own (no object store): a fake `fetch` writes known bytes and counts
calls. A corrupt cached file is fetched again, trimming never breaks another process that
shares the cache, a version in use is not trimmed, and a full disk evicts before it fails."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import storage.cache as cache_module
from storage.cache import FileCache
from storage.errors import StorageError


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Source:
    """A fake store for one version: the manifest of `files`, and a fetch callable that
    serves `serve` (the same bytes unless a test changes them) and counts calls per file.
    `fail`: how many calls raise OSError(ENOSPC) first; `wrap`: raise it as the backend
    does (a StorageError from None)."""

    def __init__(self, files: dict[str, bytes], fail: int = 0, wrap: bool = False) -> None:
        self.manifest = {"files": {rel: {"sha256": sha256(data), "size": len(data)}
                                   for rel, data in files.items()}}
        self.serve = dict(files)
        self.calls: Counter[str] = Counter()
        self.fail = fail
        self.wrap = wrap

    def __call__(self, rel: str, path: Path) -> None:
        self.calls[rel] += 1
        if self.fail:
            self.fail -= 1
            path.write_bytes(b"half")  # a partial write, then the disk is full
            try:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            except OSError as error:
                if self.wrap:
                    raise StorageError(f"store memory://x: {error}") from None
                raise
        path.write_bytes(self.serve[rel])


def materialise(cache: FileCache, version_id: str, source: Source,
                verify: bool = True) -> Path:
    data = json.dumps(source.manifest).encode()
    return cache.materialise("key", "models", version_id, source.manifest, data, source,
                             verify)


def corrupt(path: Path) -> None:
    """Overwrite `path` in place with other bytes of the same size (bit rot, a stray write):
    every hard link to it sees them."""
    os.chmod(path, 0o644)
    data = path.read_bytes()
    path.write_bytes(bytes(b ^ 0xFF for b in data[:1]) + data[1:])


def test_a_corrupt_shared_blob_is_fetched_again_for_a_new_version(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache")
    vocabulary = b'{"a": 1, "b": 2}\n'  # the same in every model version: one blob
    one = Source({"vocabulary.json": vocabulary, "w.bin": b"one"})
    materialise(cache, "v1", one)
    corrupt(cache.blob(sha256(vocabulary)))

    two = Source({"vocabulary.json": vocabulary, "w.bin": b"two"})
    second = materialise(cache, "v2", two, verify=True)
    assert (second / "vocabulary.json").read_bytes() == vocabulary
    assert two.calls == {"vocabulary.json": 1, "w.bin": 1}  # downloaded, not linked
    assert cache.blob(sha256(vocabulary)).read_bytes() == vocabulary
    # The first version, which links the corrupt file, heals on its next verified read
    # from the good blob: no download.
    first = materialise(cache, "v1", one, verify=True)
    assert (first / "vocabulary.json").read_bytes() == vocabulary
    assert one.calls == {"vocabulary.json": 1, "w.bin": 1}


def test_through_the_object_store_a_corrupt_cache_heals_and_a_corrupt_store_raises(
        tmp_path: Path) -> None:
    from storage import Store
    from storage.errors import CorruptVersionError

    url = f"memory://{os.urandom(6).hex()}"
    publisher = Store(url, cache=FileCache(tmp_path / "publisher"))

    def publish(weights: bytes) -> str:
        with publisher.publish("models") as staging:
            (staging.path / "vocabulary.json").write_text('{"a": 1, "b": 2}\n')
            (staging.path / "w.bin").write_bytes(weights)
        return staging.id

    v1 = publish(b"one")
    reader = Store(url, cache=FileCache(tmp_path / "reader"))
    reader.path("models", v1)
    vocabulary = reader.manifest("models", v1)["files"]["vocabulary.json"]["sha256"]
    corrupt(reader.cache.blob(vocabulary))
    v2 = publish(b"two")
    for version in (v2, v1, v2, v1):  # the first read of v2 downloads; v1 heals
        text = (reader.path("models", version) / "vocabulary.json").read_text()
        assert text == '{"a": 1, "b": 2}\n'

    publisher.backend.put(f"models/{v1}/w.bin", b"ONE")  # the store itself is corrupt
    corrupt(reader.path("models", v1) / "w.bin")
    with pytest.raises(CorruptVersionError, match=f"{v1}.*w.bin: downloaded bytes"):
        reader.path("models", v1)


def test_without_verify_a_cached_blob_is_trusted_on_its_size(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache")
    shared = b"shared bytes"
    materialise(cache, "v1", Source({"s": shared, "w": b"1"}))
    corrupt(cache.blob(sha256(shared)))
    two = Source({"s": shared, "w": b"2"})
    materialise(cache, "v2", two, verify=False)
    assert two.calls == {"w": 1}  # the cheap path: no hashing, no download


def test_a_corrupt_cached_version_is_fetched_again_once(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache")
    source = Source({"a.bin": b"a" * 100, "b.bin": b"b" * 100})
    path = materialise(cache, "v1", source)
    corrupt(path / "a.bin")

    assert materialise(cache, "v1", source, verify=True) == path
    assert (path / "a.bin").read_bytes() == b"a" * 100
    assert source.calls == {"a.bin": 2, "b.bin": 1}  # the bad file only, once

    corrupt(path / "a.bin")
    source.serve["a.bin"] = b"x" * 100  # now the store itself is wrong
    with pytest.raises(ValueError, match="v1: a.bin: downloaded bytes do not match"):
        materialise(cache, "v1", source, verify=True)
    assert source.calls == {"a.bin": 3, "b.bin": 1}  # exactly one retry
    assert not path.exists()  # the corrupt copy is gone, not served to the next reader

    source.serve["a.bin"] = b"a" * 100
    assert (materialise(cache, "v1", source) / "a.bin").read_bytes() == b"a" * 100


def test_a_version_in_use_is_not_trimmed_by_another_materialise(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", max_bytes=1)  # every materialise trims
    first = materialise(cache, "v1", Source({"f": b"1" * 1000}))
    second = materialise(cache, "v2", Source({"f": b"2" * 1000}))
    assert (first / "f").read_bytes() == b"1" * 1000  # within the grace: kept
    assert (second / "f").read_bytes() == b"2" * 1000

    past = time.time() - cache_module.TRIM_GRACE_S - 1  # unused for longer than the grace
    os.utime(first, (past, past))
    materialise(cache, "v3", Source({"f": b"3" * 1000}))
    assert not first.exists() and second.exists()
    assert cache.size() == 2000  # v1's blob went with it


def test_a_low_disk_trims_before_downloading(tmp_path: Path, monkeypatch) -> None:
    cache = FileCache(tmp_path / "cache")  # a bound far away: only the disk makes it trim
    old = materialise(cache, "old", Source({"f": b"o" * 1000}))
    recent = materialise(cache, "recent", Source({"f": b"r" * 1000}))
    past = time.time() - cache_module.TRIM_GRACE_S - 1
    os.utime(old, (past, past))
    monkeypatch.setattr(cache_module.shutil, "disk_usage",
                        lambda path: SimpleNamespace(total=1 << 30, used=1 << 30, free=0))
    path = materialise(cache, "new", Source({"f": b"n" * 1000}))
    assert (path / "f").read_bytes() == b"n" * 1000
    assert not old.exists()
    assert recent.exists()  # in its grace period: a low disk alone does not evict it


@pytest.mark.parametrize("wrap", [False, True], ids=["oserror", "backend-storageerror"])
def test_a_full_disk_evicts_then_the_download_is_retried(tmp_path: Path, wrap: bool) -> None:
    cache = FileCache(tmp_path / "cache")
    older = [materialise(cache, f"v{n}", Source({"f": bytes([n]) * 1000})) for n in range(2)]
    full = Source({"f": b"new" * 100}, fail=1, wrap=wrap)
    path = materialise(cache, "new", full)
    assert (path / "f").read_bytes() == b"new" * 100
    assert full.calls == {"f": 2}
    assert not any(version.exists() for version in older)  # evicted, grace or not
    assert cache.size() == 300


@pytest.mark.parametrize("wrap", [False, True], ids=["oserror", "backend-storageerror"])
def test_a_disk_that_stays_full_is_one_storage_error(tmp_path: Path, wrap: bool) -> None:
    cache = FileCache(tmp_path / "cache")
    full = Source({"f": b"new" * 100}, fail=99, wrap=wrap)
    with pytest.raises(StorageError, match="disk full") as raised:
        materialise(cache, "new", full)
    message = str(raised.value)
    assert "\n" not in message and str(cache.root) in message
    assert "models version new: f" in message
    assert full.calls == {"f": 2}
    assert not cache.version_dir("key", "models", "new").exists()


# A child process: materialises versions of a pool of 20 (5 windows of 4, all children in
# the same window at a time, so they contend for the same versions and each version goes
# unused, then evictable, for 4 windows) and reads every file of each right away.
CHILD = r"""
import json, hashlib, sys, time
from pathlib import Path
import storage.cache

root, seconds, grace = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
storage.cache.TRIM_GRACE_S = grace
cache = storage.cache.FileCache(root, max_bytes=1)  # every materialise trims
shared = b'{"vocabulary": "the same in every version"}\n'

def files(n):
    return {"vocabulary.json": shared, "w.bin": f"weights of version {n}".encode() * 50}

failures, reads, refetched, seen, errors = 0, 0, 0, set(), {}
end = time.time() + seconds
i = 0
while time.time() < end:
    window = int(time.time() / 0.75) % 5
    n = window * 4 + i % 4
    i += 1
    want = files(n)
    manifest = {"files": {rel: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                          for rel, d in want.items()}}
    fetched = []
    def fetch(rel, path, want=want):
        fetched.append(rel)
        path.write_bytes(want[rel])
    try:
        path = cache.materialise("key", "models", f"v{n:02d}", manifest,
                                 json.dumps(manifest).encode(), fetch, True)
        for rel, data in want.items():
            with open(path / rel, "rb") as handle:
                if handle.read() != data:
                    raise ValueError("wrong bytes")
            reads += 1
    except Exception as error:
        failures += 1
        key = f"{type(error).__name__}: {error}"[:160]
        errors[key] = errors.get(key, 0) + 1
    if "w.bin" in fetched and n in seen:
        refetched += 1  # this child had it before: trimmed meanwhile, built again
    seen.add(n)
print(json.dumps({"failures": failures, "reads": reads, "refetched": refetched,
                  "errors": errors}))
"""


def test_processes_sharing_a_small_cache_never_fail_because_of_trimming(
        tmp_path: Path, spawn_python: Callable) -> None:
    root = tmp_path / "cache"
    children = [spawn_python(CHILD, root, 6.0, 1.5) for _ in range(3)]
    reports = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    assert [r["failures"] for r in reports] == [0, 0, 0], reports
    assert all(r["reads"] > 100 for r in reports), reports
    # Versions unused for longer than the grace were trimmed and built again meanwhile:
    # the trimming ran while the others read.
    assert sum(r["refetched"] for r in reports) > 0, reports
    shutil.rmtree(root, ignore_errors=True)
