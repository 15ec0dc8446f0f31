"""Small filesystem helpers for durable, atomic writes: file contents are fsynced before they
are renamed into view, directories after entries are added or renamed, and small files are
replaced with ``os.replace``, so readers see the old or the new content, never a torn one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from pathlib import Path

_CHUNK = 1 << 20
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # the errnos of a full disk or quota


def hash_and_sync(path: Path) -> tuple[str, int]:
    """Return (sha256 hex, size) of a file and fsync it, reading it only once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
        os.fsync(handle.fileno())
        return digest.hexdigest(), handle.tell()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and fsync it (the directory is the caller's business)."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``: readers see the old or new content, whole."""
    # A dot first: listings that skip hidden entries never mistake it for the real file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
