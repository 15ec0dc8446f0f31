"""The byte layer under the store: bytes under '/'-separated keys, with conditional writes.

`Backend` is the contract; `open_backend(root)` picks an implementation:

- `ObstoreBackend` for a store URL: ``s3://``, ``gs://``, ``az://``/``abfs://``, ``https://``
  through obstore, ``memory://NAME`` (in memory, one per name and process: tests).
  Credentials, endpoints and the retries of transient failures (`RETRY`; conflicts and
  missing keys never): docs/object-store.md, "Which store, which credentials".
- `DirectoryBackend` for anything else: key K is the file ``<root>/K``, possibly on a volume
  that several hosts share (docs/shared-volume.md, "The directory backend").
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import unquote, urlsplit

from storage.errors import StorageError, cause, redact
from storage.fsutil import DISK_FULL, fsync_dir

__all__ = ["Backend", "DirectoryBackend", "ObjectInfo", "ObjectMissing", "ObstoreBackend",
           "WriteConflict", "is_store_url", "open_backend"]

Mode = Literal["overwrite", "create"] | str  # or the ETag the object must still have

# obstore retries 5xx, connection errors and timeouts of safe requests, never 4xx. An
# unreachable endpoint fails within ~2 s instead of obstore's 3 minutes.
RETRY: dict[str, Any] = {"max_retries": 4, "retry_timeout": timedelta(seconds=30),
                         "backoff": {"init_backoff": timedelta(milliseconds=100),
                                     "max_backoff": timedelta(seconds=5), "base": 2}}
CLIENT: dict[str, Any] = {"connect_timeout": "5s", "timeout": "300s"}  # whole-request cap
_SCHEMES = ("s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "https", "http", "memory")
_URL_RE = re.compile(r"([a-z][a-z0-9+.-]*)://(.*)", re.IGNORECASE)
_MEMORY: dict[str, Any] = {}  # memory://NAME -> its MemoryStore, shared within the process
_CLIENTS: dict[tuple, ObstoreBackend] = {}  # (url, credential variables) -> its backend
_MEMORY_GUARD = threading.Lock()

LOCKS_DIR = ".backend-locks"  # the directory backend's per-key lock files; never a key
LOCK_TIMEOUT_S = 300.0  # a key's lock is held for one small write: minutes mean trouble
_TEMP_RE = re.compile(r"\..+\.\d+\.[0-9a-f]{16}\.tmp")  # .<name>.<pid>.<hex>.tmp, by a key
_ATTEMPTS = 5  # tries per write: a delete may remove the folder between our mkdir and link
_CHUNK = 8 << 20
_BYTES = (bytes, bytearray, memoryview)


class ObjectMissing(StorageError):
    """No object at that key."""


class WriteConflict(StorageError):
    """A conditional write lost: the key exists (create) or its ETag changed (CAS)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None
    modified: float  # seconds since the epoch


class Backend(ABC):
    """Bytes under '/'-separated keys. Writes take a `mode`: ``"overwrite"``, ``"create"``
    (`WriteConflict` if the key exists: S3 ``If-None-Match: *``, link(2) on a directory) or an
    ETag (`WriteConflict` unless the object still has it: S3 ``If-Match``, a per-key lock on a
    directory): the two conditional writes that let processes and machines share a store. Every
    method raises a one-line `StorageError` naming `url` and the key when the store fails;
    `ObjectMissing` and `WriteConflict` are the two failures callers act on."""

    url: str
    """The store's name in messages, with any credentials redacted (never used to connect)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @abstractmethod
    def get(self, key: str) -> tuple[bytes, str | None]:
        """(content, ETag) of `key`, the ETag being that of the very content returned."""

    @abstractmethod
    def get_file(self, key: str, target: Path) -> int:
        """Stream `key` into `target`, a file this call creates (an existing one is an error),
        fsynced before returning; its size."""

    @abstractmethod
    def put(self, key: str, data: bytes | Path, mode: Mode = "overwrite") -> str | None:
        """Write `data` (bytes, or the file at that path) at `key`, whole or not at all, as
        `mode` says (a missing object has no ETag); the new ETag."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size, ETag and modification time of `key`; None when there is no such object."""

    @abstractmethod
    def list(self, prefix: str, offset: str | None = None) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix` (a string prefix: "models/2026" also
        matches "models/20260101-..."), sorted by key; with `offset`, only keys > `offset`."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; no error if there is no such object."""

    def _key_parts(self, key: str, prefix: bool = False) -> list[str]:
        """The parts of `key` (of a list prefix's folder, with `prefix`); a StorageError for a
        key obstore would drop or refuse, or that would leave a directory's root."""
        folder = key.rpartition("/")[0] if prefix else key
        parts = folder.split("/") if folder or not prefix else []
        why = ("keys are relative (no leading '/')" if key.startswith("/") else
               "a NUL character" if "\0" in key else
               "an empty, '.' or '..' part" if {"", ".", ".."} & set(parts) else None)
        if why:
            raise self._bad_key(key, why)
        return parts

    def _bad_key(self, key: str, why: str) -> StorageError:
        return StorageError(f"store {self.url}: bad key {key!r}: {why}")

    @property
    def local_root(self) -> Path | None:
        """The local folder holding key K as ``local_root / K`` (read in place, stage new
        objects on its filesystem); None for an object store."""
        return None

    def remove_temp_files(self, min_age_s: float) -> int:
        """Remove the temporary files that killed writers left, untouched for `min_age_s`
        seconds; how many. An object store has none (a write is one request)."""
        return 0


def is_store_url(root: object) -> bool:
    """Whether `root` names an object store (``scheme://...``) rather than a directory."""
    match = _URL_RE.fullmatch(root.strip()) if isinstance(root, str) else None
    return match is not None and match.group(1).lower() != "file"


def open_backend(root: str | Path) -> Backend:
    """The backend for `root`: a store URL (`is_store_url`) is served by obstore, anything
    else is a directory (``~`` expanded, made absolute; ``file://`` URLs taken as paths) that
    the first write creates, empty until then. StorageError naming a bad URL or scheme."""
    if not is_store_url(root):
        text = os.fspath(root)
        if text.strip().lower().startswith("file://"):
            text = unquote(urlsplit(text.strip()).path)
        return DirectoryBackend(Path(os.path.abspath(os.path.expanduser(text))))
    url = str(root)
    scheme, rest = _URL_RE.fullmatch(url.strip()).groups()
    if scheme.lower() not in _SCHEMES:
        raise StorageError(f"store {redact(url)}: unknown scheme {scheme!r}; expected "
                           "a directory or s3://, gs://, az://, https:// or memory:// URL")
    from obstore.store import MemoryStore

    if scheme.lower() == "memory":
        with _MEMORY_GUARD:
            return ObstoreBackend(url, _MEMORY.setdefault(rest.strip("/"), MemoryStore()))
    if not rest.split("/", 1)[0]:
        raise StorageError(f"store {redact(url)}: no bucket or container in the URL")
    # One client per URL and settings per process: its connection pool is kept, so the many
    # short-lived Store objects of a run do not each pay a new TCP (and TLS) handshake.
    settings = (url, *sorted((k, v) for k, v in os.environ.items()
                             if k.startswith(("AWS_", "GOOGLE_", "AZURE_"))))
    with _MEMORY_GUARD:
        if settings not in _CLIENTS:
            _CLIENTS[settings] = _connect(url)
        return _CLIENTS[settings]


# -- object stores, through obstore ---------------------------------------------------------


def _connect(url: str) -> ObstoreBackend:
    from obstore.store import from_url

    # Client options given here replace those obstore reads from the environment, so
    # AWS_ALLOW_HTTP (a plain-HTTP endpoint: MinIO, Ceph, a test server) is passed on.
    allow_http = os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in ("1", "true")
    client = {**CLIENT, "allow_http": True} if allow_http else CLIENT
    try:
        return ObstoreBackend(url, from_url(url, retry_config=RETRY, client_options=client))
    except Exception as error:  # obstore raises its own types for bad URLs and configs
        raise StorageError(f"store {redact(url)}: {_cause(error, url)}") from None


def _endpoint(url: str) -> str:
    """The server that store `url` talks to, redacted ('' for the provider's default)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("s3", "s3a"):  # MinIO, Ceph, a test server
        return redact(os.environ.get("AWS_ENDPOINT_URL", "")
                      or os.environ.get("AWS_ENDPOINT", "")).strip()
    if scheme in ("http", "https"):
        split = urlsplit(url.strip())
        return f"{split.scheme}://{split.netloc.rpartition('@')[2]}"
    return ""


def _cause(error: BaseException, url: str) -> str:
    """Why an obstore call on store `url` failed, on one line without credentials, saying what
    the usual failures mean: a missing bucket, an endpoint down, refused credentials."""
    text = str(error)
    bucket = re.search(r"<BucketName>([^<]*)</BucketName>", text)
    if "NoSuchBucket" in text:
        return f"bucket {bucket.group(1) if bucket else ''!r} does not exist".replace(" '' ", " ")
    if any(s in text for s in ("error sending request", "Connection refused", "connect")):
        endpoint = _endpoint(url)
        return f"cannot reach the endpoint{' ' + endpoint if endpoint else ''} " \
               "(connection failed after retries)"
    if type(error).__name__ in ("PermissionDeniedError", "UnauthenticatedError") or any(
            s in text for s in ("403 Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")):
        return "access denied: check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    return f"{type(error).__name__}: {cause(error)[:300]}"  # cause() redacts, then we cut


class ObstoreBackend(Backend):
    """Byte operations on one obstore store; keys are relative to the URL's prefix."""

    def __init__(self, url: str, store: Any) -> None:
        self.url = redact(url)  # the store object holds the real URL; this is for messages
        self._raw_url = url
        self._store = store

    @contextmanager
    def _call(self, key: str, prefix: bool = False) -> Iterator[Any]:
        """The obstore module, for calls on `key` (checked first); failures become StorageErrors."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        self._key_parts(key, prefix)
        try:
            yield obstore
        except (AlreadyExistsError, PreconditionError):
            raise WriteConflict(f"store {self.url}: {key} changed meanwhile") from None
        except Exception as error:
            # obstore's NotFoundError is a FileNotFoundError; so is a missing bucket's.
            if isinstance(error, FileNotFoundError) and "NoSuchBucket" not in str(error):
                raise ObjectMissing(f"store {self.url}: no object {key}") from None
            raise StorageError(f"store {self.url}: {_cause(error, self._raw_url)}") from None

    def get(self, key: str) -> tuple[bytes, str | None]:
        with self._call(key) as obstore:
            result = obstore.get(self._store, key)
            return bytes(result.bytes()), result.meta["e_tag"]

    def get_file(self, key: str, target: Path) -> int:
        with self._call(key) as obstore, open(target, "xb") as handle:
            for chunk in obstore.get(self._store, key).stream(min_chunk_size=_CHUNK):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
            return handle.tell()

    def put(self, key: str, data: bytes | Path, mode: Mode = "overwrite") -> str | None:
        put_mode: Any = mode if mode in ("overwrite", "create") else {"e_tag": mode}
        with self._call(key) as obstore:
            # Conditional writes are single requests (obstore refuses multipart with a mode).
            return obstore.put(self._store, key, data, mode=put_mode, chunk_size=16 << 20,
                               use_multipart=None if mode == "overwrite" else False)["e_tag"]

    def head(self, key: str) -> ObjectInfo | None:
        with suppress(ObjectMissing), self._call(key) as obstore:
            return _info(obstore.head(self._store, key))
        return None

    def list(self, prefix: str, offset: str | None = None) -> list[ObjectInfo]:
        # obstore matches prefixes a path segment at a time ("a/k" lists "a/k/x", not
        # "a/kk"): list the prefix's folder and keep the keys that start with it.
        with self._call(prefix, prefix=True) as obstore:
            batches = obstore.list(self._store, prefix.rpartition("/")[0] or None,
                                   offset=offset, chunk_size=1000)
            found = [_info(meta) for batch in batches for meta in batch
                     if meta["path"].startswith(prefix)]
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        with suppress(ObjectMissing), self._call(key) as obstore:
            obstore.delete(self._store, key)


def _info(meta: Any) -> ObjectInfo:
    return ObjectInfo(meta["path"], meta["size"], meta["e_tag"],
                      meta["last_modified"].timestamp())


# -- a local (or shared) directory ----------------------------------------------------------


def _etag(st: os.stat_result) -> str:
    """A file's ETag: mtime, inode and size. Every write makes a new file (a new inode) and,
    under the key's lock, gives it an mtime past the old one's: the ETag changes on every
    write, even of the same bytes, even where inode numbers are recycled."""
    return f"{st.st_mtime_ns:x}-{st.st_ino:x}-{st.st_size:x}"


@contextmanager
def _source(data: bytes | Path) -> Iterator[bytes | IO[bytes]]:
    if isinstance(data, _BYTES):
        yield data
    else:
        with open(data, "rb") as handle:
            yield handle


class DirectoryBackend(Backend):
    """Objects as files under `root`; how writes stay whole and exact across hosts, and what
    the filesystem must provide: docs/shared-volume.md, "The directory backend". Writing
    ``a`` where ``a/b`` is (or the reverse) fails with a StorageError, not a WriteConflict."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    @property
    def local_root(self) -> Path:
        return self.root

    def _key_parts(self, key: str, prefix: bool = False) -> list[str]:
        parts = super()._key_parts(key, prefix)
        if parts[:1] == [LOCKS_DIR]:
            raise self._bad_key(key, f"{LOCKS_DIR}/ is the directory backend's own folder")
        if not prefix and _TEMP_RE.fullmatch(parts[-1]):
            raise self._bad_key(key, "named like a temporary file (.<name>.<pid>.<hex>.tmp)")
        return parts

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*self._key_parts(key))

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from filelock import Timeout

        try:
            yield
        except Timeout:  # an OSError too
            raise StorageError(f"store {self.url}: {key}: its lock stayed busy for "
                               f"{LOCK_TIMEOUT_S:.0f} s") from None
        except OSError as error:
            why = f"disk full ({cause(error)})" if error.errno in DISK_FULL else cause(error)
            raise StorageError(f"store {self.url}: {key}: {why}") from None

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        from filelock import FileLock

        folder = self.root / LOCKS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        # A new FileLock per call is a new open file description: flock(2) then excludes
        # this process's other threads too. Lock files are never removed: a waiter may hold
        # one open, and would lock an unlinked inode while a newcomer locks a new file.
        with FileLock(folder / f"{name}.lock", timeout=LOCK_TIMEOUT_S):
            yield

    def _make_folder(self, folder: Path) -> None:
        """Create `folder` and its missing parents, each durably (fsync of its parent)."""
        missing = []
        while not folder.is_dir() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir()
                fsync_dir(path.parent)
            except FileExistsError:
                if not path.is_dir():  # a key's file is in the way: no conflict of writes
                    raise NotADirectoryError(errno.ENOTDIR, "a key's file is there",
                                             str(path)) from None

    def _open(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"store {self.url}: no object {key}") from None

    def get(self, key: str) -> tuple[bytes, str | None]:
        with self._errors(key), self._open(key) as handle:
            # The open file's ETag is the bytes': writers replace files, never rewrite them.
            return handle.read(), _etag(os.fstat(handle.fileno()))

    def get_file(self, key: str, target: Path) -> int:
        with self._errors(key), self._open(key) as source, open(target, "xb") as handle:
            try:
                shutil.copyfileobj(source, handle, _CHUNK)
                handle.flush()
                os.fsync(handle.fileno())
                return handle.tell()
            except BaseException:
                with suppress(OSError):
                    os.unlink(target)  # no partial copy left behind
                raise

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        with self._errors(key):
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
        if not stat.S_ISREG(st.st_mode):
            return None  # a folder holding keys is no object
        return ObjectInfo(key, st.st_size, _etag(st), st.st_mtime_ns / 1e9)

    def list(self, prefix: str, offset: str | None = None) -> list[ObjectInfo]:
        parts = self._key_parts(prefix, prefix=True)
        found: list[ObjectInfo] = []

        def walk(directory: str, rel: str) -> None:  # rel: the folder's keys' prefix
            entries = []
            with suppress(FileNotFoundError, NotADirectoryError), os.scandir(directory) as scan:
                entries = [*scan]
            for entry in entries:
                key = rel + entry.name
                if entry.is_dir(follow_symlinks=False):
                    sub = key + "/"
                    if (rel or entry.name != LOCKS_DIR) and (
                            sub.startswith(prefix) or prefix.startswith(sub)):
                        walk(entry.path, sub)
                elif key.startswith(prefix) and (offset is None or key > offset) and \
                        not _TEMP_RE.fullmatch(entry.name):
                    with suppress(FileNotFoundError):  # deleted while we looked
                        st = entry.stat()
                        if stat.S_ISREG(st.st_mode):
                            found.append(ObjectInfo(key, st.st_size, _etag(st),
                                                    st.st_mtime_ns / 1e9))

        with self._errors(prefix):
            walk(str(self.root.joinpath(*parts)), "".join(f"{part}/" for part in parts))
        return sorted(found, key=lambda info: info.key)

    def put(self, key: str, data: bytes | Path, mode: Mode = "overwrite") -> str | None:
        path = self._path(key)
        with self._errors(key), _source(data) as source:
            if mode == "create":
                return self._create(key, path, data, source)
            with self._lock(key):
                return self._replace(key, path, source, mode)

    def _create(self, key: str, path: Path, data: bytes | Path,
                source: bytes | IO[bytes]) -> str:
        try:
            # A file of the caller's on this filesystem is linked itself, not copied: the
            # store stages versions next to the objects and has fsynced them already.
            if isinstance(data, Path) and stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                self._make_folder(path.parent)
                try:
                    os.link(data, path)
                    fsync_dir(path.parent)
                    return _etag(os.fstat(source.fileno()))
                except FileExistsError:
                    raise
                except OSError:  # another filesystem, no hard links there, gone: copy it
                    pass
            return self._write(path, source, time.time_ns(), os.link)  # never clobbers
        except FileExistsError:
            if not path.is_dir():
                raise WriteConflict(f"store {self.url}: {key} exists already") from None
            raise StorageError(f"store {self.url}: {key}: a folder of keys is there") from None

    def _replace(self, key: str, path: Path, source: bytes | IO[bytes], mode: Mode) -> str:
        """Overwrite or compare-and-swap; the caller holds the key's lock."""
        current: os.stat_result | None = None
        with suppress(FileNotFoundError, NotADirectoryError):
            current = os.stat(path)
        if current is not None and stat.S_ISDIR(current.st_mode):
            if mode == "overwrite":
                raise StorageError(f"store {self.url}: {key}: a folder of keys is there")
            current = None
        if mode != "overwrite":
            if current is None:
                raise WriteConflict(f"store {self.url}: {key} is gone (expected ETag {mode})")
            if _etag(current) != mode:
                raise WriteConflict(f"store {self.url}: {key} changed meanwhile")
        # Strictly later than the current file, whatever the clock says (see _etag).
        mtime_ns = max(time.time_ns(), current.st_mtime_ns + 1 if current else 0)
        return self._write(path, source, mtime_ns, os.replace)

    def _write(self, path: Path, source: bytes | IO[bytes], mtime_ns: int,
               place: Callable[[Path, Path], None]) -> str:
        """`place` a `_write_temp` copy of `source` at `path`; its ETag. Again if a delete
        removed the folder meanwhile (unless `source` was a pipe, read already)."""
        rereadable = isinstance(source, _BYTES) or source.seekable()
        for attempt in range(_ATTEMPTS):
            self._make_folder(path.parent)
            try:
                temp, st = self._write_temp(path, source, mtime_ns)
                try:
                    place(temp, path)
                finally:
                    with suppress(OSError):
                        os.unlink(temp)  # gone already once renamed into place
                fsync_dir(path.parent)
                return _etag(st)
            except FileNotFoundError:
                if attempt == _ATTEMPTS - 1 or not rereadable:
                    raise
        raise AssertionError("unreachable")

    def _write_temp(self, target: Path, source: bytes | IO[bytes],
                    mtime_ns: int) -> tuple[Path, os.stat_result]:
        """A fsynced copy of `source` next to `target`, with mtime `mtime_ns`; (path, stat)."""
        temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        try:
            with open(temp, "xb") as handle:
                if isinstance(source, _BYTES):
                    handle.write(source)
                else:
                    if source.seekable():  # a retry reads the file again
                        source.seek(0)
                    shutil.copyfileobj(source, handle, _CHUNK)
                handle.flush()
                os.utime(handle.fileno(), ns=(mtime_ns, mtime_ns))
                os.fsync(handle.fileno())
                return temp, os.fstat(handle.fileno())
        except BaseException:
            with suppress(OSError):
                os.unlink(temp)
            raise

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._errors(key):
            if not os.path.lexists(path):
                return  # nothing to do (and a missing root stays missing)
            with self._lock(key):
                try:
                    os.unlink(path)
                    fsync_dir(path.parent)  # gone already if another delete emptied it
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    return
        # Empty folders go, as in an object store (a writer losing its folder retries).
        folder = path.parent
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def remove_temp_files(self, min_age_s: float) -> int:
        """As in Backend; pick an age no write can reach (a live writer's file is younger)."""
        cutoff = time.time() - min_age_s
        removed = 0
        with self._errors(""):
            for directory, folders, files in os.walk(self.root):
                if directory == str(self.root):
                    folders[:] = [name for name in folders if name != LOCKS_DIR]
                for name in filter(_TEMP_RE.fullmatch, files):
                    path = os.path.join(directory, name)
                    with suppress(FileNotFoundError):
                        if os.lstat(path).st_mtime < cutoff:
                            os.unlink(path)
                            removed += 1
        return removed
