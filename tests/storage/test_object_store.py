"""What only an object store has: the backend's conditional writes, the host cache, and the
retention of uploads no commit names. Run on obstore's memory store and on moto's S3 server."""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from storage import StorageError, Store
from storage.backend import RETRY, ObjectMissing, WriteConflict, is_store_url, open_backend
from storage.cache import FileCache
from tests.storage.pausing import Pausing


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


class Counting(Pausing):
    """A backend that counts downloads per key."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
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
    readers = [Store(url, backend=backend, cache=host) for _ in range(3)]
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
    Store(url, backend=backend, cache=host).path("models", "latest")
    assert sum(backend.downloads.values()) == again  # ...but a later reader never does


def test_the_cache_stays_under_its_bound(url: str, tmp_path: Path) -> None:
    for n in range(4):
        with Store(url).publish("datasets") as staging:
            (staging.path / "rows.bin").write_bytes(bytes([n]) * 50_000)
    # No grace: the bound then holds at once (a version used within the grace is kept).
    cache = FileCache(tmp_path / "small", max_bytes=120_000, trim_grace_s=0)
    reader = Store(url, cache=cache)
    for version in reader.versions("datasets"):
        assert (reader.path("datasets", version["id"]) / "rows.bin").stat().st_size == 50_000
    assert cache.size() <= 120_000


def test_uploads_no_commit_names_are_invisible_and_kept_for_the_retention(url: str) -> None:
    store = Store(url)
    with store.publish("models") as staging:
        (staging.path / "w").write_bytes(b"w")
    store.backend.put("models/20240101-000000-000000-abcdef/w", b"orphan")
    assert [m["id"] for m in store.versions("models")] == [staging.id]
    assert store.verify() == []  # not a version: nothing to check, nothing wrong
    store.gc(apply=True)  # young: maybe a publish in progress elsewhere
    assert store.backend.head("models/20240101-000000-000000-abcdef/w") is not None
    store.gc(apply=True, retention_s=0)
    assert store.backend.head("models/20240101-000000-000000-abcdef/w") is None
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
