"""The object-store backend: a few byte operations with conditional writes, nothing more.

Versions, aliases, the feed buffer and work directories live above this layer
(storage.object_store, storage.feeds); a backend only stores bytes under keys. Writes take
a `mode`: ``"overwrite"``, ``"create"`` (fails with `WriteConflict` if the key exists:
S3 ``If-None-Match: *``) or an ETag (fails with `WriteConflict` unless the object still has
that ETag: S3 ``If-Match``). Those two conditional writes are what lets several machines
share a store without any lock.

`open_backend(url)` serves ``s3://``, ``gs://``, ``az://``/``abfs://``, ``https://`` (through
obstore; credentials and endpoint from the standard variables: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``,
``GOOGLE_*``, ``AZURE_*``) and ``memory://NAME`` (obstore's in-memory store, one per name and
process: for tests). Every failure becomes a one-line `StorageError` naming the store and the
cause; transient ones (5xx, dropped connections, timeouts) are retried with exponential
backoff by obstore first (`RETRY`), conflicts and missing keys never.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from storage.errors import StorageError, cause

__all__ = ["Backend", "ObjectInfo", "ObjectMissing", "WriteConflict", "is_store_url",
           "open_backend"]

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
_CLIENTS: dict[tuple, Backend] = {}  # (url, credential variables) -> its backend
_MEMORY_GUARD = threading.Lock()


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


def is_store_url(root: object) -> bool:
    """Whether `root` names an object store (``scheme://...``) rather than a directory."""
    if not isinstance(root, str):
        return False
    match = _URL_RE.fullmatch(root.strip())
    return match is not None and match.group(1).lower() != "file"


def open_backend(url: str) -> Backend:
    """The backend for store URL `url`; StorageError naming the URL for a bad one."""
    match = _URL_RE.fullmatch(url.strip())
    if match is None or match.group(1).lower() not in _SCHEMES:
        scheme = match.group(1) if match else url
        raise StorageError(f"store {url}: unknown scheme {scheme!r}; expected a directory or "
                           "s3://, gs://, az://, https:// or memory:// URL")
    scheme, rest = match.group(1).lower(), match.group(2)
    from obstore.store import MemoryStore

    if scheme == "memory":
        with _MEMORY_GUARD:
            return Backend(url, _MEMORY.setdefault(rest.strip("/"), MemoryStore()))
    if not rest.split("/", 1)[0]:
        raise StorageError(f"store {url}: no bucket or container in the URL")
    # One client per URL and settings per process: its connection pool is kept, so the many
    # short-lived Store objects of a run do not each pay a new TCP (and TLS) handshake.
    settings = (url, *sorted((k, v) for k, v in os.environ.items()
                             if k.startswith(("AWS_", "GOOGLE_", "AZURE_"))))
    with _MEMORY_GUARD:
        if settings not in _CLIENTS:
            _CLIENTS[settings] = _connect(url)
        return _CLIENTS[settings]


def _connect(url: str) -> Backend:
    from obstore.store import from_url

    try:
        # Client options given here replace those obstore reads from the environment, so
        # AWS_ALLOW_HTTP (a plain-HTTP endpoint: MinIO, Ceph, a test server) is passed on.
        allow_http = os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in ("1", "true")
        client = {**CLIENT, "allow_http": True} if allow_http else CLIENT
        return Backend(url, from_url(url, retry_config=RETRY, client_options=client))
    except Exception as error:  # obstore raises its own types for bad URLs and configs
        raise StorageError(f"store {url}: {_cause(error)}") from None


def _cause(error: BaseException) -> str:
    """One line saying why an obstore call failed (storage.errors.cause, plus what the
    usual failures mean: a missing bucket, an endpoint down, refused credentials)."""
    text = str(error)
    bucket = re.search(r"<BucketName>([^<]*)</BucketName>", text)
    if "NoSuchBucket" in text:
        return f"bucket {bucket.group(1) if bucket else ''!r} does not exist".replace(" '' ", " ")
    if any(s in text for s in ("error sending request", "Connection refused", "connect")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        return f"cannot reach the endpoint{' ' + endpoint if endpoint else ''} " \
               "(connection failed after retries)"
    if type(error).__name__ in ("PermissionDeniedError", "UnauthenticatedError") or \
            any(s in text for s in ("403 Forbidden", "InvalidAccessKeyId",
                                    "SignatureDoesNotMatch")):
        return "access denied: check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    return f"{type(error).__name__}: {cause(error)[:300]}"


class Backend:
    """Byte operations on one obstore store; keys are relative to the URL's prefix."""

    def __init__(self, url: str, store: Any) -> None:
        self.url = url
        self._store = store

    def __repr__(self) -> str:
        return f"Backend({self.url!r})"

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            yield
        except (AlreadyExistsError, PreconditionError):
            raise WriteConflict(f"store {self.url}: {key} changed meanwhile") from None
        except FileNotFoundError as error:  # obstore's NotFoundError is one
            if "NoSuchBucket" in str(error):
                raise StorageError(f"store {self.url}: {_cause(error)}") from None
            raise ObjectMissing(f"store {self.url}: no object {key}") from None
        except StorageError:
            raise
        except Exception as error:
            raise StorageError(f"store {self.url}: {_cause(error)}") from None

    def get(self, key: str) -> tuple[bytes, str | None]:
        """(content, ETag) of `key`; ObjectMissing when there is none."""
        import obstore

        with self._errors(key):
            result = obstore.get(self._store, key)
            return bytes(result.bytes()), result.meta["e_tag"]

    def get_file(self, key: str, target: Path) -> int:
        """Stream `key` into the new file `target`; its size."""
        import obstore

        size = 0
        with self._errors(key), open(target, "xb") as handle:
            for chunk in obstore.get(self._store, key).stream(min_chunk_size=8 << 20):
                handle.write(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        return size

    def put(self, key: str, data: bytes | Path, mode: Mode = "overwrite") -> str | None:
        """Write `data` (bytes, or a file's content) at `key` under `mode`; the new ETag."""
        import obstore

        put_mode: Any = mode if mode in ("overwrite", "create") else {"e_tag": mode}
        with self._errors(key):
            # Conditional writes are single requests (obstore refuses multipart with a mode).
            multipart = None if mode == "overwrite" else False
            return obstore.put(self._store, key, data, mode=put_mode,
                               use_multipart=multipart, chunk_size=16 << 20)["e_tag"]

    def head(self, key: str) -> ObjectInfo | None:
        import obstore

        try:
            with self._errors(key):
                return _info(obstore.head(self._store, key))
        except ObjectMissing:
            return None

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix` (a folder: end it with '/')."""
        import obstore

        with self._errors(prefix):
            return [_info(meta) for batch in obstore.list(self._store, prefix or None,
                                                          chunk_size=1000)
                    for meta in batch if meta["path"].startswith(prefix)]

    def delete(self, key: str) -> None:
        """Remove `key` (no error if it is already gone)."""
        import obstore

        try:
            with self._errors(key):
                obstore.delete(self._store, key)
        except ObjectMissing:
            pass


def _info(meta: Any) -> ObjectInfo:
    return ObjectInfo(meta["path"], meta["size"], meta["e_tag"],
                      meta["last_modified"].timestamp())
