"""The byte layer under the store: a few operations on keys, with conditional writes.

Versions, aliases, the feed buffer and work directories live above this layer (the store
engine, storage.feeds); a backend only stores bytes under '/'-separated keys. `Backend` is
the contract, and there are two implementations of it:

- `ObstoreBackend`: ``s3://``, ``gs://``, ``az://``/``abfs://``, ``https://`` through obstore
  (credentials and endpoint from the standard variables: ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``,
  ``GOOGLE_*``, ``AZURE_*``) and ``memory://NAME`` (obstore's in-memory store, one per name
  and process: for tests). Transient failures (5xx, dropped connections, timeouts) are
  retried with exponential backoff by obstore (`RETRY`), conflicts and missing keys never.
- `DirectoryBackend`: a folder, key K being the file ``<root>/K``, possibly on a volume that
  several hosts share (docs/shared-volume.md, "The directory backend").

Writes take a `mode`: ``"overwrite"``, ``"create"`` (fails with `WriteConflict` if the key
exists: S3 ``If-None-Match: *``, link(2) on a directory) or an ETag (fails with
`WriteConflict` unless the object still has exactly that ETag: S3 ``If-Match``, a per-key
lock on a directory). Those two conditional writes are all the store engine needs to let
several processes and machines share a store.

`open_backend(root)` picks the backend: a store URL gets an `ObstoreBackend`, anything else
is a directory. Every failure becomes a one-line `StorageError` naming the store (its URL
with any credentials redacted: `storage.errors.redact`) and the key.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import unquote, urlsplit

from storage.errors import StorageError, cause, redact
from storage.fsutil import fsync_dir

__all__ = ["Backend", "DirectoryBackend", "ObjectInfo", "ObjectMissing", "ObstoreBackend",
           "WriteConflict", "is_store_url", "open_backend"]

Mode = Literal["overwrite", "create"] | str  # or the ETag the object must still have

# Transient errors only (obstore retries 5xx, connection errors and timeouts of safe requests,
# never 4xx). An unreachable endpoint fails within ~2 s instead of obstore's 3 minutes.
RETRY: dict[str, Any] = {
    "max_retries": 4,
    "retry_timeout": timedelta(seconds=30),
    "backoff": {"init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=5), "base": 2},
}
CLIENT: dict[str, Any] = {"connect_timeout": "5s", "timeout": "300s"}  # whole-request cap
_SCHEMES = ("s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "https", "http", "memory")
_URL_RE = re.compile(r"([a-z][a-z0-9+.-]*)://(.*)", re.IGNORECASE)
_MEMORY: dict[str, Any] = {}  # memory://NAME -> its MemoryStore, shared within the process
_CLIENTS: dict[tuple, ObstoreBackend] = {}  # (url, credential variables) -> its backend
_MEMORY_GUARD = threading.Lock()

# The directory backend's per-key lock files live here, under the root; never a key.
LOCKS_DIR = ".backend-locks"
# A per-key lock is held for one small write; waiting minutes means something is badly wrong.
LOCK_TIMEOUT_S = 300.0
# A writer's temporary file, next to its target: `.<name>.<pid>.<random hex>.tmp`.
_TEMP_RE = re.compile(r"\..+\.\d+\.[0-9a-f]{16}\.tmp")
# A folder emptied by a delete may vanish between our mkdir and our link: tries per write.
_ATTEMPTS = 5
_CHUNK = 8 << 20
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


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
    """Bytes under '/'-separated keys, with create-only and compare-and-swap writes.

    Every method raises a one-line `StorageError` naming `url` and the key when the store
    fails; `ObjectMissing` and `WriteConflict` are the two failures callers act on.
    """

    url: str
    """The store's name in messages, with any credentials redacted (never used to connect)."""

    @abstractmethod
    def get(self, key: str) -> tuple[bytes, str | None]:
        """(content, ETag) of `key`, the ETag being that of the very content returned;
        ObjectMissing when there is no such object."""

    @abstractmethod
    def get_file(self, key: str, target: Path) -> int:
        """Stream `key` into `target`, a file this call creates (an existing one is an error),
        fsynced before returning; its size. ObjectMissing when there is no such object."""

    @abstractmethod
    def put(self, key: str, data: bytes | Path, mode: Mode = "overwrite") -> str | None:
        """Write `data` (bytes, or the content of the file at that path) at `key`, whole or
        not at all; the new object's ETag. `mode`: ``"overwrite"``; ``"create"``:
        WriteConflict if the key exists; an ETag: WriteConflict unless the object still
        has exactly that ETag (a missing object has none)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size, ETag and modification time of `key`; None when there is no such object."""

    @abstractmethod
    def list(self, prefix: str, offset: str | None = None) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix` (a plain string prefix: "a/" is a
        folder, "models/2026" also matches "models/20260101-..."), sorted by key; with
        `offset`, only the keys after it (``key > offset``)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; no error if there is no such object."""

    def _key_parts(self, key: str, prefix: bool = False) -> list[str]:
        """The parts of `key` (of the folder part of a list prefix, with `prefix`); a
        StorageError naming a key that some backend would not take as it is: a leading '/',
        an empty, '.' or '..' part (obstore would drop or refuse them, a directory would
        leave its root), a NUL."""
        folder = key.rpartition("/")[0] if prefix else key
        parts = folder.split("/") if folder or not prefix else []
        why = ("keys are relative (no leading '/')" if key.startswith("/") else
               "a NUL character" if "\0" in key else
               "an empty, '.' or '..' part" if {"", ".", ".."} & set(parts) else None)
        if why:
            raise StorageError(f"store {self.url}: bad key {key!r}: {why}")
        return parts

    @property
    def local_root(self) -> Path | None:
        """For a backend over a local folder, that folder (key K is the file
        ``local_root / K``: the store may read objects in place and stage new ones on the
        same filesystem); None for an object store."""
        return None

    def remove_temp_files(self, min_age_s: float) -> int:
        """Remove the temporary files that killed writers left, untouched for `min_age_s`
        seconds; how many. An object store has none (a write is one request)."""
        return 0


def is_store_url(root: object) -> bool:
    """Whether `root` names an object store (``scheme://...``) rather than a directory."""
    if not isinstance(root, str):
        return False
    match = _URL_RE.fullmatch(root.strip())
    return match is not None and match.group(1).lower() != "file"


def open_backend(root: str | Path) -> Backend:
    """The backend for `root`: a store URL (`is_store_url`) is served by obstore, anything
    else is a directory (``~`` expanded, made absolute; ``file://`` URLs taken as paths). The
    directory need not exist: it is created by the first write, and reads it as empty until
    then. StorageError naming the URL for an unknown scheme or a bad URL."""
    if not is_store_url(root):
        text = os.fspath(root)
        if text.strip().lower().startswith("file://"):
            text = unquote(urlsplit(text.strip()).path)
        return DirectoryBackend(Path(os.path.abspath(os.path.expanduser(text))))
    url = str(root)
    match = _URL_RE.fullmatch(url.strip())
    assert match is not None  # is_store_url
    if match.group(1).lower() not in _SCHEMES:
        raise StorageError(f"store {redact(url)}: unknown scheme {match.group(1)!r}; expected "
                           "a directory or s3://, gs://, az://, https:// or memory:// URL")
    scheme, rest = match.group(1).lower(), match.group(2)
    from obstore.store import MemoryStore

    if scheme == "memory":
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


# ---------------------------------------------------------------------------------------------
# Object stores, through obstore


def _connect(url: str) -> ObstoreBackend:
    from obstore.store import from_url

    try:
        # Client options given here replace those obstore reads from the environment, so
        # AWS_ALLOW_HTTP (a plain-HTTP endpoint: MinIO, Ceph, a test server) is passed on.
        allow_http = os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in ("1", "true")
        client = {**CLIENT, "allow_http": True} if allow_http else CLIENT
        return ObstoreBackend(url, from_url(url, retry_config=RETRY, client_options=client))
    except Exception as error:  # obstore raises its own types for bad URLs and configs
        raise StorageError(f"store {redact(url)}: {_cause(error, url)}") from None


def _endpoint(url: str) -> str:
    """The server that store `url` talks to, credentials redacted ('' when it is the
    provider's default): an s3:// store's is AWS_ENDPOINT_URL (MinIO, Ceph, a test server),
    an http(s):// store's is in its URL."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("s3", "s3a"):
        return redact(os.environ.get("AWS_ENDPOINT_URL", "")
                      or os.environ.get("AWS_ENDPOINT", "")).strip()
    if scheme in ("http", "https"):
        split = urlsplit(url.strip())
        return f"{split.scheme}://{split.netloc.rpartition('@')[2]}"
    return ""


def _cause(error: BaseException, url: str) -> str:
    """One line saying why an obstore call on store `url` failed (storage.errors.cause, plus
    what the usual failures mean: a missing bucket, an endpoint down, refused credentials),
    never with credentials in it: obstore's messages quote the request's URL, userinfo and
    all."""
    text = str(error)
    bucket = re.search(r"<BucketName>([^<]*)</BucketName>", text)
    if "NoSuchBucket" in text:
        return f"bucket {bucket.group(1) if bucket else ''!r} does not exist".replace(" '' ", " ")
    if any(s in text for s in ("error sending request", "Connection refused", "connect")):
        endpoint = _endpoint(url)
        return f"cannot reach the endpoint{' ' + endpoint if endpoint else ''} " \
               "(connection failed after retries)"
    if type(error).__name__ in ("PermissionDeniedError", "UnauthenticatedError") or \
            any(s in text for s in ("403 Forbidden", "InvalidAccessKeyId",
                                    "SignatureDoesNotMatch")):
        return "access denied: check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    return f"{type(error).__name__}: {cause(error)[:300]}"  # cause() redacts, then we cut


class ObstoreBackend(Backend):
    """Byte operations on one obstore store; keys are relative to the URL's prefix."""

    def __init__(self, url: str, store: Any) -> None:
        self.url = redact(url)  # the store object holds the real URL; this is for messages
        self._raw_url = url
        self._store = store

    def __repr__(self) -> str:
        return f"ObstoreBackend({self.url!r})"

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            yield
        except (AlreadyExistsError, PreconditionError):
            raise WriteConflict(f"store {self.url}: {key} changed meanwhile") from None
        except FileNotFoundError as error:  # obstore's NotFoundError is one
            if "NoSuchBucket" in str(error):
                raise StorageError(f"store {self.url}: {_cause(error, self._raw_url)}") from None
            raise ObjectMissing(f"store {self.url}: no object {key}") from None
        except StorageError:
            raise
        except Exception as error:
            raise StorageError(f"store {self.url}: {_cause(error, self._raw_url)}") from None

    def get(self, key: str) -> tuple[bytes, str | None]:
        import obstore

        self._key_parts(key)
        with self._errors(key):
            result = obstore.get(self._store, key)
            return bytes(result.bytes()), result.meta["e_tag"]

    def get_file(self, key: str, target: Path) -> int:
        import obstore

        self._key_parts(key)
        size = 0
        with self._errors(key), open(target, "xb") as handle:
            for chunk in obstore.get(self._store, key).stream(min_chunk_size=_CHUNK):
                handle.write(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        return size

    def put(self, key: str, data: bytes | Path, mode: Mode = "overwrite") -> str | None:
        import obstore

        self._key_parts(key)
        put_mode: Any = mode if mode in ("overwrite", "create") else {"e_tag": mode}
        with self._errors(key):
            # Conditional writes are single requests (obstore refuses multipart with a mode).
            multipart = None if mode == "overwrite" else False
            return obstore.put(self._store, key, data, mode=put_mode,
                               use_multipart=multipart, chunk_size=16 << 20)["e_tag"]

    def head(self, key: str) -> ObjectInfo | None:
        import obstore

        self._key_parts(key)
        try:
            with self._errors(key):
                return _info(obstore.head(self._store, key))
        except ObjectMissing:
            return None

    def list(self, prefix: str, offset: str | None = None) -> list[ObjectInfo]:
        import obstore

        self._key_parts(prefix, prefix=True)
        # obstore matches prefixes a path segment at a time ("a/k" lists "a/k/x", not
        # "a/kk"): list the prefix's folder and keep the keys that start with it.
        folder = prefix.rpartition("/")[0]
        with self._errors(prefix):
            found = [_info(meta) for batch in obstore.list(self._store, folder or None,
                                                           offset=offset, chunk_size=1000)
                     for meta in batch if meta["path"].startswith(prefix)]
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        import obstore

        self._key_parts(key)
        try:
            with self._errors(key):
                obstore.delete(self._store, key)
        except ObjectMissing:
            pass


def _info(meta: Any) -> ObjectInfo:
    return ObjectInfo(meta["path"], meta["size"], meta["e_tag"],
                      meta["last_modified"].timestamp())


# ---------------------------------------------------------------------------------------------
# A local (or shared) directory


def _etag(st: os.stat_result) -> str:
    """A file's ETag: modification time, inode and size. Every write makes a new file (a
    temporary one, then linked or renamed onto the key) while the object it replaces still
    exists, so the new inode number differs from the current one's; and a write under the
    key's lock sets the new file's mtime to at least the current one's plus 1 ns, so the ETag
    changes even where inode numbers are recycled or unstable (some network filesystems),
    and two writes of the same bytes never share an ETag."""
    return f"{st.st_mtime_ns:x}-{st.st_ino:x}-{st.st_size:x}"


def _rereadable(source: bytes | IO[bytes]) -> bool:
    return isinstance(source, bytes | bytearray | memoryview) or source.seekable()


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class DirectoryBackend(Backend):
    """Objects as files under `root`: key ``a/b`` is the file ``<root>/a/b``.

    Create-only writes link(2) a fsynced temporary file onto the key, which fails if the key
    exists; overwrites, compare-and-swaps and deletes hold the key's lock file (under
    ``<root>/.backend-locks/``) while they check and rename. Readers take no lock: a key's
    file is only ever replaced whole, by a rename, never written in place. Unlike an object
    store, a directory cannot hold both ``a`` and ``a/b``: writing one where the other is
    fails with a StorageError (not a WriteConflict). What the filesystem must provide is in
    docs/shared-volume.md ("The directory backend").
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def __repr__(self) -> str:
        return f"DirectoryBackend({self.url!r})"

    @property
    def local_root(self) -> Path:
        return self.root

    # -- keys, errors, locks --------------------------------------------------------------

    def _key_parts(self, key: str, prefix: bool = False) -> list[str]:
        parts = super()._key_parts(key, prefix)
        if parts and parts[0] == LOCKS_DIR:
            raise StorageError(f"store {self.url}: bad key {key!r}: {LOCKS_DIR}/ is the "
                               "directory backend's own folder")
        if not prefix and _TEMP_RE.fullmatch(parts[-1]):
            raise StorageError(f"store {self.url}: bad key {key!r}: named like a temporary "
                               "file (.<name>.<pid>.<hex>.tmp)")
        return parts

    def _path(self, key: str) -> Path:
        """The file of `key`; StorageError naming a key that could leave the root or collide
        with the backend's own files."""
        return self.root.joinpath(*self._key_parts(key))

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from filelock import Timeout

        try:
            yield
        except StorageError:
            raise
        except Timeout:
            raise StorageError(f"store {self.url}: {key}: its lock stayed busy for "
                               f"{LOCK_TIMEOUT_S:.0f} s") from None
        except OSError as error:
            if error.errno in _DISK_FULL:
                raise StorageError(f"store {self.url}: {key}: disk full "
                                   f"({cause(error)})") from None
            raise StorageError(f"store {self.url}: {key}: {cause(error)}") from None

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        from filelock import FileLock

        folder = self.root / LOCKS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        # A new, thread-local FileLock per call: each is its own open file description, so
        # flock(2) excludes the other threads of this process as well as other processes.
        # Lock files are never removed: a waiter may have opened the file already, and would
        # then hold a lock on an unlinked inode while a newcomer locks a new one.
        with FileLock(folder / f"{name}.lock", timeout=LOCK_TIMEOUT_S):
            yield

    def _make_folder(self, folder: Path) -> None:
        """Create `folder` and its missing parents, fsyncing each new entry's parent so that
        a key written below survives a crash."""
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            if folder == folder.parent:
                break
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                if not path.is_dir():  # a key's file is in the way: no conflict of writes
                    raise NotADirectoryError(errno.ENOTDIR, "a key's file is there",
                                             str(path)) from None
                continue
            fsync_dir(path.parent)

    def _write_temp(self, target: Path, source: bytes | IO[bytes],
                    mtime_ns: int) -> tuple[Path, os.stat_result]:
        """A fsynced temporary copy of `source` next to `target`, its mtime set to
        `mtime_ns`; its path and final stat."""
        temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        try:
            with open(temp, "xb") as handle:
                if isinstance(source, bytes | bytearray | memoryview):
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
            _unlink_quietly(temp)
            raise

    # -- reads ----------------------------------------------------------------------------

    def _missing(self, key: str) -> ObjectMissing:
        return ObjectMissing(f"store {self.url}: no object {key}")

    def get(self, key: str) -> tuple[bytes, str | None]:
        path = self._path(key)
        with self._errors(key):
            try:
                with open(path, "rb") as handle:
                    # The ETag of the open file is that of the bytes read: a writer replaces
                    # the key's file by another one, never rewrites this one.
                    return handle.read(), _etag(os.fstat(handle.fileno()))
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise self._missing(key) from None

    def get_file(self, key: str, target: Path) -> int:
        path = self._path(key)
        with self._errors(key):
            try:
                source = open(path, "rb")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise self._missing(key) from None
            with source, open(target, "xb") as handle:
                try:
                    shutil.copyfileobj(source, handle, _CHUNK)
                    handle.flush()
                    os.fsync(handle.fileno())
                    return handle.tell()
                except BaseException:
                    _unlink_quietly(target)  # no partial copy left behind
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
        folder = "/".join(parts)
        found: list[ObjectInfo] = []

        def walk(directory: str, rel: str) -> None:  # rel: the folder's keys' prefix
            try:
                with os.scandir(directory) as scan:
                    entries = [*scan]
            except (FileNotFoundError, NotADirectoryError):
                return
            for entry in entries:
                key = rel + entry.name
                if entry.is_dir(follow_symlinks=False):
                    sub = key + "/"
                    if (rel or entry.name != LOCKS_DIR) and (
                            sub.startswith(prefix) or prefix.startswith(sub)):
                        walk(entry.path, sub)
                elif key.startswith(prefix) and (offset is None or key > offset) and \
                        not _TEMP_RE.fullmatch(entry.name):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:  # deleted while we looked
                        continue
                    if stat.S_ISREG(st.st_mode):
                        found.append(ObjectInfo(key, st.st_size, _etag(st),
                                                st.st_mtime_ns / 1e9))

        with self._errors(prefix):
            walk(str(self.root.joinpath(*parts)), folder + "/" if folder else "")
        return sorted(found, key=lambda info: info.key)

    # -- writes ---------------------------------------------------------------------------

    @contextmanager
    def _source(self, data: bytes | Path) -> Iterator[bytes | IO[bytes]]:
        if isinstance(data, bytes | bytearray | memoryview):
            yield data
        else:
            with open(data, "rb") as handle:
                yield handle

    def put(self, key: str, data: bytes | Path, mode: Mode = "overwrite") -> str | None:
        path = self._path(key)
        with self._errors(key), self._source(data) as source:
            if mode == "create":
                return self._create(key, path, data, source)
            with self._lock(key):
                return self._replace(key, path, source, mode)

    def _create(self, key: str, path: Path, data: bytes | Path,
                source: bytes | IO[bytes]) -> str:
        # A file of the caller's on this filesystem is linked itself, not copied: the store
        # stages versions next to the objects and has fsynced them already.
        link_source = isinstance(data, Path) and not isinstance(source, bytes) and \
            stat.S_ISREG(os.fstat(source.fileno()).st_mode)  # not a FIFO, a device, ...
        for attempt in range(_ATTEMPTS):
            self._make_folder(path.parent)
            try:
                if link_source:
                    try:
                        os.link(data, path)
                        fsync_dir(path.parent)
                        return _etag(os.fstat(source.fileno()))
                    except (FileExistsError, FileNotFoundError):
                        link_source = False  # gone meanwhile: copy from the open file
                        raise
                    except OSError:  # another filesystem, no hard links there, ...
                        link_source = False
                temp, st = self._write_temp(path, source, time.time_ns())
                try:
                    os.link(temp, path)  # fails if the key exists: no clobbering
                finally:
                    _unlink_quietly(temp)
                fsync_dir(path.parent)
                return _etag(st)
            except FileExistsError:
                if path.is_dir():
                    raise StorageError(
                        f"store {self.url}: {key}: a folder of keys is there") from None
                raise WriteConflict(f"store {self.url}: {key} exists already") from None
            except FileNotFoundError:
                # A concurrent delete removed the folder: write again (unless the data was
                # a pipe, read already).
                if attempt == _ATTEMPTS - 1 or not _rereadable(source):
                    raise
        raise AssertionError("unreachable")

    def _replace(self, key: str, path: Path, source: bytes | IO[bytes], mode: Mode) -> str:
        """Overwrite or compare-and-swap; the caller holds the key's lock."""
        try:
            current: os.stat_result | None = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            current = None
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
        for attempt in range(_ATTEMPTS):
            self._make_folder(path.parent)
            try:
                temp, st = self._write_temp(path, source, mtime_ns)
                try:
                    os.replace(temp, path)
                except BaseException:
                    _unlink_quietly(temp)
                    raise
                fsync_dir(path.parent)
                return _etag(st)
            except FileNotFoundError:
                # A concurrent delete removed the folder: write again (unless the data was
                # a pipe, read already).
                if attempt == _ATTEMPTS - 1 or not _rereadable(source):
                    raise
        raise AssertionError("unreachable")

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._errors(key):
            if not os.path.lexists(path):
                return  # nothing to do (and a missing root stays missing)
            with self._lock(key):
                try:
                    os.unlink(path)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    return
                fsync_dir(path.parent)
        # Empty folders are dropped, as they would not exist in an object store; a writer
        # that loses its folder to this retries (_ATTEMPTS).
        folder = path.parent
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def remove_temp_files(self, min_age_s: float) -> int:
        """Remove the temporary files (``.<name>.<pid>.<hex>.tmp``) of writers killed
        mid-write, untouched for `min_age_s` seconds; how many. A live writer's temp file is
        at most as old as its write, so pick an age no write can reach."""
        cutoff = time.time() - min_age_s
        removed = 0
        with self._errors(""):
            for directory, folders, files in os.walk(self.root):
                if directory == str(self.root):
                    folders[:] = [name for name in folders if name != LOCKS_DIR]
                for name in files:
                    if not _TEMP_RE.fullmatch(name):
                        continue
                    path = os.path.join(directory, name)
                    try:
                        if os.lstat(path).st_mtime < cutoff:
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        pass
        return removed
