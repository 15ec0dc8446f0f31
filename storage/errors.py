"""Exceptions raised by the artifact store.

Both are ``ValueError`` subclasses so callers (the CLI in particular) can report them as user
errors: an unknown id, a misspelt kind, a corrupted version on disk.
"""

from __future__ import annotations


class StorageError(ValueError):
    """A request the store cannot satisfy: bad kind, unknown id or alias, disk full, ..."""


class CorruptVersionError(StorageError):
    """A published version no longer matches its manifest (missing file, size or checksum)."""

    def __init__(self, kind: str, version_id: str, file: str, reason: str) -> None:
        self.kind = kind
        self.version_id = version_id
        self.file = file
        self.reason = reason
        super().__init__(f"corrupt {kind} version {version_id}: {file}: {reason}")


class AliasMovedError(StorageError):
    """An alias the caller built on moved while it was publishing (`Store.publish`'s
    `expect`): nothing was published; plan again on top of the alias's new target."""
