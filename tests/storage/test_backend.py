"""The byte backends' contract, run on three of them: a local directory, obstore's memory
store and moto's S3 server (tests/s3server.py). The store engine above relies on nothing
else: round trips, create-only and compare-and-swap writes, sorted prefix listings with an
offset, and keys that mean the same on every backend. Then what only a directory has:
writers killed mid-write, per-key locks, temp-file clean-up; and credentials never shown."""

from __future__ import annotations

import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

import storage.backend as backend_module
from storage.backend import (
    Backend,
    DirectoryBackend,
    ObjectMissing,
    ObstoreBackend,
    WriteConflict,
    open_backend,
)
from storage.errors import StorageError, redact

REPO = Path(__file__).resolve().parents[2]
BINARY = bytes(range(256)) * 4096 + b"\x00\xff\r\n"  # 1 MiB and a bit, every byte value


@pytest.fixture(params=["directory", "memory", "s3"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def url(kind: str, request, tmp_path: Path) -> str:
    """What open_backend takes for a fresh, empty store of `kind` (a child process can open
    the directory and S3 ones too: the s3 fixture puts AWS_* in os.environ)."""
    if kind == "directory":
        return str(tmp_path / "store")
    if kind == "memory":
        return f"memory://{secrets.token_hex(6)}"
    return request.getfixturevalue("s3_store_url")


@pytest.fixture
def backend(url: str) -> Backend:
    return open_backend(url)


def python(code: str, *args: object) -> subprocess.Popen:
    """A child `python -c code args` importing this checkout, stdin and stdout piped."""
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def temp_files(root: Path) -> list[str]:
    return [name for _, _, names in os.walk(root) for name in names if name.endswith(".tmp")]


# --- the contract, on every backend -----------------------------------------------------


def test_round_trip_of_nested_keys_and_binary_data(backend: Backend) -> None:
    objects = {"a": b"top", "a2/b/c/d.bin": BINARY, "a2/empty": b"", ".work/job.tar": b"t"}
    tags = {key: backend.put(key, data) for key, data in objects.items()}
    for key, data in objects.items():
        assert backend.get(key) == (data, tags[key])  # the ETag of the bytes returned
        info = backend.head(key)
        assert (info.key, info.size, info.etag) == (key, len(data), tags[key])
        assert abs(info.modified - time.time()) < 300
    assert [(i.key, i.size) for i in backend.list("")] == sorted(
        (key, len(data)) for key, data in objects.items())
    backend.delete("a2/b/c/d.bin")
    with pytest.raises(ObjectMissing, match="a2/b/c/d.bin"):
        backend.get("a2/b/c/d.bin")
    assert backend.head("a2/b/c/d.bin") is None
    assert [i.key for i in backend.list("")] == [".work/job.tar", "a", "a2/empty"]
    assert backend.get("a")[0] == b"top"


def test_overwrite_replaces_the_content(backend: Backend) -> None:
    first = backend.put("k", b"one")
    second = backend.put("k", b"two!")
    assert backend.get("k") == (b"two!", second) and second != first
    assert backend.head("k").size == 4


def test_create_only_is_refused_when_the_key_exists(backend: Backend) -> None:
    tag = backend.put("x/k", b"first", "create")
    with pytest.raises(WriteConflict, match="x/k"):
        backend.put("x/k", b"second", "create")
    assert backend.get("x/k") == (b"first", tag)
    backend.delete("x/k")
    assert backend.put("x/k", b"again", "create")  # gone: creating it is fine again
    assert backend.get("x/k")[0] == b"again"


def test_compare_and_swap(backend: Backend) -> None:
    first = backend.put("alias", b"v1", "create")
    second = backend.put("alias", b"v2", first)
    assert second != first and backend.get("alias") == (b"v2", second)
    with pytest.raises(WriteConflict, match="alias"):
        backend.put("alias", b"v3", first)  # stale ETag
    assert backend.get("alias") == (b"v2", second)
    third = backend.put("alias", b"v3", second)
    assert backend.get("alias") == (b"v3", third)
    with pytest.raises(WriteConflict, match="nothing-here"):
        backend.put("nothing-here", b"v", third)  # no object has any ETag
    assert backend.head("nothing-here") is None
    backend.delete("alias")
    with pytest.raises(WriteConflict):
        backend.put("alias", b"v4", third)  # deleted since


def test_list_by_folder_and_mid_name_prefix_sorted_with_offset(backend: Backend) -> None:
    keys = ["models/20260102/b", "data/z", "models/2026x", "models/20250101/a",
            "modelsx/y", "models/20260101/a", "m"]
    if isinstance(backend, ObstoreBackend):  # a directory cannot have a file and a folder
        keys.append("models/20260101/a/deeper")  # of one name (docs/shared-volume.md)
    for key in keys:  # not in order: the listing sorts
        backend.put(key, key.encode())
    listed = backend.list("models/")
    assert [i.key for i in listed] == sorted(k for k in keys if k.startswith("models/"))
    assert [i.size for i in listed] == [len(i.key) for i in listed]
    assert [i.key for i in backend.list("models/2026")] == sorted(
        k for k in keys if k.startswith("models/2026"))
    assert [i.key for i in backend.list("models")] == sorted(
        k for k in keys if k.startswith("models"))
    assert [i.key for i in backend.list("")] == sorted(keys)
    assert [i.key for i in backend.list("models/", offset="models/20260101/a")] == sorted(
        k for k in keys if k.startswith("models/") and k > "models/20260101/a")
    assert [i.key for i in backend.list("models/2026", offset="models/20260102/b")] == [
        "models/2026x"]
    assert [i.key for i in backend.list("", offset="modelsx/y")] == []
    assert backend.list("nothing/") == [] and backend.list("models/3") == []


def test_deleting_a_missing_key_is_fine(backend: Backend) -> None:
    backend.delete("never/was")
    backend.put("k", b"1")
    backend.delete("k")
    backend.delete("k")
    assert backend.head("k") is None and backend.list("") == []


def test_put_from_a_file(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(BINARY)
    tag = backend.put("models/v1/weights.bin", source, "create")
    assert backend.get("models/v1/weights.bin") == (BINARY, tag)
    with pytest.raises(WriteConflict):
        backend.put("models/v1/weights.bin", source, "create")
    other = tmp_path / "other.bin"
    other.write_bytes(b"smaller")
    new_tag = backend.put("models/v1/weights.bin", other, tag)
    assert new_tag != tag and backend.get("models/v1/weights.bin") == (b"smaller", new_tag)
    backend.put("models/v1/other", source)
    assert backend.get("models/v1/other")[0] == BINARY


def test_get_file(backend: Backend, tmp_path: Path) -> None:
    backend.put("a/blob", BINARY)
    target = tmp_path / "copy.bin"
    assert backend.get_file("a/blob", target) == len(BINARY)
    assert target.read_bytes() == BINARY
    with pytest.raises(StorageError):
        backend.get_file("a/blob", target)  # only ever a new file
    assert target.read_bytes() == BINARY
    with pytest.raises(ObjectMissing, match="a/none"):
        backend.get_file("a/none", tmp_path / "other")


@pytest.mark.parametrize("key", ["/abs/key", "a//b", "a/../b", "./a", "a/.", "..", "", "a/",
                                 "a\0b"])
def test_bad_keys_are_refused_naming_them(backend: Backend, key: str, tmp_path: Path) -> None:
    for call in (lambda: backend.put(key, b"x"), lambda: backend.put(key, b"x", "create"),
                 lambda: backend.get(key), lambda: backend.head(key),
                 lambda: backend.delete(key), lambda: backend.get_file(key, tmp_path / "t")):
        with pytest.raises(StorageError) as error:
            call()
        assert repr(key) in str(error.value) and "bad key" in str(error.value)
    assert backend.list("") == []  # nothing was written anywhere
    with pytest.raises(StorageError, match="bad key"):
        backend.list("a/../")


# Increments the counter at argv[2] argv[3] times with read-CAS-retry, after "go" on stdin;
# prints how many of its writes lost a race.
INCREMENT = """
import sys
from storage.backend import WriteConflict, open_backend
backend, key, times = open_backend(sys.argv[1]), sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
lost = 0
for _ in range(times):
    while True:
        data, tag = backend.get(key)
        try:
            backend.put(key, str(int(data) + 1).encode(), tag)
            break
        except WriteConflict:
            lost += 1
print(lost, flush=True)
"""


def increment(backend: Backend, key: str, times: int) -> int:
    """INCREMENT's loop, in this process; how many writes lost a race."""
    lost = 0
    for _ in range(times):
        while True:
            data, tag = backend.get(key)
            try:
                backend.put(key, str(int(data) + 1).encode(), tag)
                break
            except WriteConflict:
                lost += 1
    return lost


def test_concurrent_compare_and_swap_loses_no_update(kind: str, url: str,
                                                     backend: Backend) -> None:
    """4 writers, 25 increments each, of one counter: 100, whoever lost races. Processes
    where the store can be shared between them, threads for the memory store (one per
    process) and also for the directory (its locks must exclude this process's threads)."""
    backend.put("counter", b"0", "create")
    workers, times = 4, 25
    if kind != "memory":
        children = [python(INCREMENT, url, "counter", times) for _ in range(workers)]
        try:
            for child in children:
                assert child.stdout.readline().strip() == "ready"
            for child in children:  # all at once: the races are the point
                child.stdin.write("go\n")
                child.stdin.flush()
            lost = [int(child.communicate(timeout=60)[0]) for child in children]
        finally:
            for child in children:
                child.kill()
                child.wait()
        assert all(child.returncode == 0 for child in children)
        assert int(backend.get("counter")[0]) == workers * times, lost
        print(kind, "lost races:", lost)
    if kind != "s3":
        backend.put("threads", b"0", "create")
        threads = [threading.Thread(target=increment, args=(backend, "threads", times))
                   for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert int(backend.get("threads")[0]) == workers * times


def test_local_root(backend: Backend) -> None:
    backend.put("models/v/w.bin", b"weights")
    if isinstance(backend, DirectoryBackend):
        assert (backend.local_root / "models" / "v" / "w.bin").read_bytes() == b"weights"
    else:
        assert backend.local_root is None
        assert backend.remove_temp_files(0) == 0  # a write is one request: nothing to clean


# --- what only the directory backend has --------------------------------------------------


def test_identical_rewrites_get_new_etags(tmp_path: Path) -> None:
    """The ETag is no content hash: a compare-and-swap decided on an old version of the
    object must fail even when the object was since rewritten with the same bytes."""
    backend = DirectoryBackend(tmp_path)
    tags = [backend.put("alias", b"same")]
    for _ in range(5):
        tags.append(backend.put("alias", b"same"))
    for _ in range(5):
        tags.append(backend.put("alias", b"same", tags[-1]))
    assert len(set(tags)) == len(tags)
    assert backend.get("alias") == (b"same", tags[-1])
    with pytest.raises(WriteConflict):
        backend.put("alias", b"other", tags[-2])  # ABA: same bytes, but not the same write


def test_a_file_on_the_same_filesystem_is_linked_not_copied(tmp_path: Path,
                                                            monkeypatch) -> None:
    backend = DirectoryBackend(tmp_path / "store")
    source = tmp_path / "staged.bin"
    source.write_bytes(BINARY)
    tag = backend.put("models/v1/w", source, "create")
    stored = tmp_path / "store" / "models" / "v1" / "w"
    assert stored.stat().st_ino == source.stat().st_ino and tag == backend.head("models/v1/w").etag
    # Where linking fails (another filesystem: EXDEV), the bytes are copied instead.
    real_link = os.link

    def no_cross_device(src, dst, *args, **kwargs):
        if Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", no_cross_device)
    backend.put("models/v2/w", source, "create")
    copied = tmp_path / "store" / "models" / "v2" / "w"
    assert copied.read_bytes() == BINARY and copied.stat().st_ino != source.stat().st_ino
    assert temp_files(tmp_path / "store") == []


# Puts the content of argv[3] (a FIFO the test feeds, or a file) at argv[2] with mode argv[4].
WRITER = """
import sys
from pathlib import Path
from storage.backend import DirectoryBackend
DirectoryBackend(Path(sys.argv[1])).put(sys.argv[2], Path(sys.argv[3]), sys.argv[4])
print("done", flush=True)
"""


def wait_for(condition, what: str, child: subprocess.Popen, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert child.poll() is None, f"the writer exited before {what}"
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.01)
    return found


@pytest.mark.parametrize("mode", ["create", "overwrite"])
def test_a_writer_killed_mid_write_leaves_the_key_absent_or_whole(
        tmp_path: Path, mode: str, monkeypatch) -> None:
    """The writer reads its data from a FIFO that the test feeds 16 MiB and then leaves
    open, so it is SIGKILLed with a partial temporary file for sure (and, overwriting,
    while it holds the key's lock)."""
    monkeypatch.setattr(backend_module, "LOCK_TIMEOUT_S", 20.0)  # a stuck lock fails fast
    root = tmp_path / "store"
    backend = DirectoryBackend(root)
    old = b"old version\n" * 1000
    if mode == "overwrite":
        backend.put("big/blob", old)
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    child = python(WRITER, root, "big/blob", fifo, mode)
    try:
        # Opening a FIFO's write end blocks until a reader comes: poll instead, so that a
        # writer that died first fails the test rather than hanging it.
        fd = wait_for(lambda: _open_writer(fifo), "reader on the FIFO", child)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as feed:
            feed.write(b"x" * (20 << 20))  # it copies 8 MiB reads: 16 MiB land, 4 wait
            feed.flush()
            wait_for(lambda: [n for n in temp_files(root)
                              if (root / "big" / n).stat().st_size >= 16 << 20],
                     "16 MiB in a temporary file", child)
            child.kill()  # SIGKILL
            child.wait(10)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    if mode == "create":
        assert backend.head("big/blob") is None and backend.list("") == []
    else:
        assert backend.get("big/blob")[0] == old
        assert [i.key for i in backend.list("")] == ["big/blob"]
    assert len(temp_files(root)) == 1  # its leftover, which no listing shows
    assert backend.remove_temp_files(3600) == 0  # a writer may still be at it
    assert backend.remove_temp_files(0) == 1 and temp_files(root) == []
    tag = backend.put("big/blob", b"new")  # the dead writer's lock is free
    assert backend.get("big/blob") == (b"new", tag)


def _open_writer(fifo: Path) -> int | None:
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ENXIO:  # no reader yet
            return None
        raise


def test_a_writer_killed_during_a_large_put_leaves_the_key_absent_or_whole(
        tmp_path: Path) -> None:
    root = tmp_path / "store"
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(1 << 20) * 96)
    child = python(WRITER, root, "big/large", source, "overwrite")
    try:
        wait_for(lambda: child.poll() is not None or temp_files(root), "temporary file", child)
        child.kill()  # SIGKILL, if it is still writing
        child.wait(10)
    finally:
        child.kill()
        child.wait()
    backend = DirectoryBackend(root)
    info = backend.head("big/large")
    assert info is None or backend.get("big/large")[0] == source.read_bytes()
    assert [i.key for i in backend.list("")] == ([] if info is None else ["big/large"])
    backend.remove_temp_files(0)
    assert temp_files(root) == []


def test_a_folder_removed_between_mkdir_and_link_is_made_again(tmp_path: Path,
                                                               monkeypatch) -> None:
    """A delete of the folder's last key removes the folder; a writer that had just made
    it retries instead of failing."""
    backend = DirectoryBackend(tmp_path)
    real = DirectoryBackend._make_folder
    pruned: list[Path] = []

    def pruned_right_after(self, folder: Path) -> None:
        real(self, folder)
        if len(pruned) < 2:
            pruned.append(folder)
            folder.rmdir()  # as a concurrent delete would

    monkeypatch.setattr(DirectoryBackend, "_make_folder", pruned_right_after)
    backend.put("f/a", b"1", "create")
    assert pruned == [tmp_path / "f"] * 2 and backend.get("f/a")[0] == b"1"
    pruned.clear()
    tag = backend.put("g/b", b"2")
    backend.put("g/b", b"3", tag)
    assert backend.get("g/b")[0] == b"3" and temp_files(tmp_path) == []


def test_delete_removes_emptied_folders_and_keeps_the_rest(tmp_path: Path) -> None:
    backend = DirectoryBackend(tmp_path / "store")
    backend.put("a/b/c/k", b"1")
    backend.put("a/x", b"2")
    backend.delete("a/b/c/k")
    assert not (tmp_path / "store" / "a" / "b").exists()
    assert (tmp_path / "store" / "a" / "x").is_file() and backend.list("a/b") == []
    assert backend.get("a/x")[0] == b"2"


def test_listings_skip_temporary_files_and_locks(tmp_path: Path) -> None:
    backend = DirectoryBackend(tmp_path)
    tag = backend.put("k/v", b"1")
    backend.put("k/v", b"2", tag)  # takes the key's lock: the lock folder now exists
    assert (tmp_path / backend_module.LOCKS_DIR).is_dir()
    (tmp_path / "k" / f".v.{os.getpid()}.{secrets.token_hex(8)}.tmp").write_bytes(b"partial")
    assert [i.key for i in backend.list("")] == ["k/v"]
    assert [i.key for i in backend.list("k/")] == ["k/v"]
    for key in (f"{backend_module.LOCKS_DIR}/x", "k/.v.1.0123456789abcdef.tmp"):
        with pytest.raises(StorageError, match="bad key"):
            backend.put(key, b"x")


def test_remove_temp_files_by_age(tmp_path: Path) -> None:
    backend = DirectoryBackend(tmp_path)
    backend.put("a/b", b"1")
    old = tmp_path / "a" / f".b.123.{secrets.token_hex(8)}.tmp"
    young = tmp_path / f".c.456.{secrets.token_hex(8)}.tmp"
    keep = tmp_path / "a" / "notes.tmp"  # an object, not named like a writer's temp file
    backend.put("a/notes.tmp", b"k")
    for path in (old, young):
        path.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert backend.remove_temp_files(3600) == 1
    assert not old.exists() and young.exists() and keep.exists()
    assert backend.remove_temp_files(0) == 1 and not young.exists() and keep.exists()
    assert [i.key for i in backend.list("")] == ["a/b", "a/notes.tmp"]


def test_a_missing_root_reads_as_empty_and_is_made_by_the_first_write(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    backend = open_backend(root)
    assert isinstance(backend, DirectoryBackend) and backend.local_root == root
    assert backend.list("") == [] and backend.list("a/") == [] and backend.head("k") is None
    with pytest.raises(ObjectMissing):
        backend.get("k")
    backend.delete("k")
    assert backend.remove_temp_files(0) == 0
    assert not root.exists()
    backend.put("k", b"1", "create")
    assert (root / "k").read_bytes() == b"1"


def test_open_backend_picks_the_backend(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert open_backend("~/s").local_root == tmp_path / "s"
    assert open_backend("rel/s").local_root == tmp_path / "rel" / "s"
    assert open_backend(Path("rel")).local_root == tmp_path / "rel"
    assert open_backend(f"file://{tmp_path}/u").local_root == tmp_path / "u"
    memory = open_backend(f"memory://{secrets.token_hex(4)}")
    assert isinstance(memory, ObstoreBackend) and memory.local_root is None
    with pytest.raises(StorageError, match="unknown scheme 'ftp'"):
        open_backend("ftp://host/x")


def test_errors_name_the_store_and_the_key(tmp_path: Path) -> None:
    backend = DirectoryBackend(tmp_path / "store")
    backend.put("a/file", b"1")
    with pytest.raises(StorageError) as error:
        backend.put("a/file/below", b"2")  # a key's file is where a folder would be
    message = str(error.value)
    assert message.startswith(f"store {tmp_path / 'store'}: a/file/below: ")
    assert "\n" not in message and not isinstance(error.value, WriteConflict)
    with pytest.raises(StorageError, match="folder"):
        backend.put("a", b"3", "create")  # a folder of keys, not a conflicting object


def test_a_full_disk_says_so(tmp_path: Path, monkeypatch) -> None:
    backend = DirectoryBackend(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    for mode in ("create", "overwrite"):
        with pytest.raises(StorageError, match=r"^store .*: k: disk full") as error:
            backend.put("k", b"data", mode)
        assert "\n" not in str(error.value)
    monkeypatch.undo()
    assert temp_files(tmp_path) == [] and backend.head("k") is None


# --- credentials --------------------------------------------------------------------------


def test_redact() -> None:
    assert redact("https://alice:S3CRET@host:9000/b") == "https://***@host:9000/b"
    assert redact("GET http://bob@h/x failed; see s3://u:p@e/") == \
        "GET http://***@h/x failed; see s3://***@e/"
    for text in ("s3://bucket/key@v2", "/tmp/a@b", "memory://x", "user@example.com"):
        assert redact(text) == text


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def no_retries(monkeypatch) -> None:
    monkeypatch.setattr(backend_module, "RETRY", {"max_retries": 0,
                                                  "retry_timeout": timedelta(seconds=5)})


def every_error(backend: Backend, tmp_path: Path) -> list[str]:
    """The messages of every operation on `backend`, whose endpoint is down."""
    calls = [lambda: backend.get("k"), lambda: backend.put("k", b"x"),
             lambda: backend.head("k"), lambda: backend.list("a/"),
             lambda: backend.delete("k"),
             lambda: backend.get_file("k", tmp_path / secrets.token_hex(4))]
    if not backend.url.startswith("https://"):  # obstore's HTTP store has no conditional put
        calls += [lambda: backend.put("k", b"x", "create"), lambda: backend.put("k", b"x", "e")]
    messages = []
    for call in calls:
        with pytest.raises(StorageError) as error:
            call()
        messages.append(str(error.value))
    return messages


def test_an_https_store_s_credentials_are_never_shown(no_retries, monkeypatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere.invalid:1")  # s3:// only
    port = closed_port()
    backend = open_backend(f"https://alice:S3CRET@127.0.0.1:{port}/bkt")
    for text in [*every_error(backend, tmp_path), repr(backend), backend.url]:
        assert "S3CRET" not in text and "alice" not in text, text
    for message in every_error(backend, tmp_path):
        assert f"127.0.0.1:{port}" in message and "elsewhere" not in message, message
        assert "cannot reach" in message and "\n" not in message
    with pytest.raises(StorageError) as error:
        open_backend("ftp://alice:S3CRET@host/x")
    assert "S3CRET" not in str(error.value)


def test_the_s3_endpoint_s_credentials_are_never_shown(no_retries, monkeypatch,
                                                       tmp_path: Path) -> None:
    port = closed_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
                        "AWS_ENDPOINT_URL": f"http://bob:PW0rd9@127.0.0.1:{port}"}.items():
        monkeypatch.setenv(name, value)
    backend = open_backend(f"s3://bkt-{secrets.token_hex(4)}/prefix")
    for message in every_error(backend, tmp_path):
        assert "PW0rd9" not in message and "bob" not in message, message
        assert f"127.0.0.1:{port}" in message and "cannot reach" in message, message
