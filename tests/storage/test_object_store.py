"""What only an object store has: the backend's conditional writes, the host cache, the
retraction of a publish whose expected alias moved at the last moment, and the age rule
for uploads without a manifest. Run on obstore's memory store and on moto's S3 server."""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import storage.staging as staging_cleanup
from storage import AliasMovedError, StorageError, Store
from storage.backend import (
    RETRY,
    ObjectMissing,
    ObstoreBackend,
    WriteConflict,
    is_store_url,
    open_backend,
)
from storage.cache import FileCache
from storage.object_store import ObjectStore


@pytest.fixture(params=["memory", "s3"])
def url(request, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    if request.param == "memory":
        return f"memory://{secrets.token_hex(6)}"
    return request.getfixturevalue("s3_store_url")


def test_conditional_writes(url: str) -> None:
    backend = open_backend(url)
    first = backend.put("a/k", b"1", "create")
    with pytest.raises(WriteConflict):
        backend.put("a/k", b"2", "create")
    second = backend.put("a/k", b"2", first)
    with pytest.raises(WriteConflict):
        backend.put("a/k", b"3", first)  # stale ETag
    assert backend.get("a/k") == (b"2", second)
    backend.put("a/kk", b"x")
    backend.put("b/k", b"y")
    assert [i.key for i in backend.list("a/")] == ["a/k", "a/kk"]
    assert backend.head("a/k").size == 1 and backend.head("nope") is None
    backend.delete("a/k")
    backend.delete("a/k")  # already gone: fine
    with pytest.raises(ObjectMissing):
        backend.get("a/k")


def test_store_urls() -> None:
    assert is_store_url("s3://b/p") and is_store_url("memory://x")
    assert not is_store_url("/tmp/store") and not is_store_url("file:///tmp/x")
    with pytest.raises(StorageError, match="unknown scheme 'ftp'"):
        open_backend("ftp://host/x")
    with pytest.raises(StorageError, match="no bucket"):
        open_backend("s3:///x")


class Counting(ObstoreBackend):
    """A backend that counts downloads per key."""

    def __init__(self, inner: ObstoreBackend) -> None:
        super().__init__(inner.url, inner._store)
        self.downloads: dict[str, int] = {}

    def get_file(self, key: str, target: Path) -> int:
        self.downloads[key] = self.downloads.get(key, 0) + 1
        return super().get_file(key, target)


def test_each_file_is_downloaded_once_per_host(url: str, tmp_path: Path) -> None:
    shared = {"weights.bin": b"w" * 100_000}
    with Store(url).publish("models") as staging:
        (staging.path / "weights.bin").write_bytes(shared["weights.bin"])
    with Store(url).publish("models") as staging:  # same bytes: same blob
        (staging.path / "weights.bin").write_bytes(shared["weights.bin"])
    backend = Counting(open_backend(url))
    host = FileCache(tmp_path / "host")
    readers = [ObjectStore(url, backend=backend, cache=host) for _ in range(3)]
    threads = [threading.Thread(target=r.path, args=("models", "latest")) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for version in readers[0].versions("models"):
        readers[0].path("models", version["id"])
    assert sum(backend.downloads.values()) <= 3  # racing threads may each fetch once...
    assert sum(backend.downloads.values()) >= 1
    again = sum(backend.downloads.values())
    ObjectStore(url, backend=backend, cache=host).path("models", "latest")
    assert sum(backend.downloads.values()) == again  # ...but a later reader never does


def test_the_cache_stays_under_its_bound(url: str, tmp_path: Path) -> None:
    for n in range(4):
        with Store(url).publish("datasets") as staging:
            (staging.path / "rows.bin").write_bytes(bytes([n]) * 50_000)
    # No grace: the bound then holds at once (a version used within the grace is kept).
    cache = FileCache(tmp_path / "small", max_bytes=120_000, trim_grace_s=0)
    reader = ObjectStore(url, cache=cache)
    for version in reader.versions("datasets"):
        assert (reader.path("datasets", version["id"]) / "rows.bin").stat().st_size == 50_000
    assert cache.size() <= 120_000


def test_a_publish_whose_expected_alias_moves_at_the_commit_is_taken_back(url: str) -> None:
    store = Store(url)
    with store.publish("datasets") as staging:
        (staging.path / "a").write_bytes(b"1")
    base = staging.id
    other = Store(url)
    real_expected = store._expected_tags

    def racing(kind, expect):  # another writer moves "latest" right after our check
        tags = real_expected(kind, expect)
        with other.publish("datasets") as rival:
            (rival.path / "a").write_bytes(b"2")
        return tags

    store._expected_tags = racing
    with pytest.raises(AliasMovedError), \
            store.publish("datasets", expect={"latest": base}) as staging:
        (staging.path / "a").write_bytes(b"3")
    visible = [m["id"] for m in Store(url).versions("datasets")]
    assert staging.id not in visible and len(visible) == 2
    with pytest.raises(StorageError, match="unknown datasets"):
        store.resolve("datasets", staging.id)  # not even from this host's cache


def test_uploads_without_manifest_are_invisible_then_reported_then_collected(
        url: str, monkeypatch) -> None:
    store = Store(url)
    with store.publish("models") as staging:
        (staging.path / "w").write_bytes(b"w")
    store.backend.put("models/20240101-000000-000000-abcdef/w", b"orphan")
    assert [m["id"] for m in store.versions("models")] == [staging.id]
    assert store.verify() == []  # young: maybe a publish in progress elsewhere
    assert store.clean_staging() == 0
    monkeypatch.setattr(staging_cleanup, "STALE_AFTER_S", 0.0)
    assert [p.id for p in store.verify()] == ["20240101-000000-000000-abcdef"]
    store.gc(apply=True)
    assert store.verify() == [] and [m["id"] for m in store.versions("models")] == [staging.id]


@pytest.mark.parametrize(("status", "attempts"), [(503, 1 + RETRY["max_retries"]), (403, 1)])
def test_only_transient_errors_are_retried(status: int, attempts: int, monkeypatch,
                                           tmp_path: Path) -> None:
    """An endpoint that always answers `status`: 5xx is retried with backoff, 4xx is not;
    either way the caller gets one line naming the store."""
    seen: list[str] = []

    class Always(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            seen.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Always)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                            "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
                            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}"
                            }.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(StorageError) as error:
            open_backend("s3://flaky/x").get("key")
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == attempts
    assert str(error.value).startswith("store s3://flaky/x: ") and "\n" not in str(error.value)
