"""Exceptions raised by the artifact store, and the one way any error becomes a user's line.

The store's exceptions are ``ValueError`` subclasses so callers (the CLI in particular) can
report them as user errors: an unknown id, a misspelt kind, a corrupted version on disk.

`one_line(what, error)` is the project's only format for an error a person reads, on a
terminal or in a flow run's log alike: ``charlm: <what failed>: <cause>``, where `what`
names the command, the bad value, file or URL. It lives here, at the bottom of the import
graph (cli -> flows -> tasks -> {ingestion -> storage}), so that every layer can use it.
"""

from __future__ import annotations

import re

PROGRAM = "charlm"  # every user-facing error line starts with "charlm: "


def cause(error: BaseException | str) -> str:
    """What went wrong, on one line: the message's first non-empty line with its whitespace
    collapsed (a library's multi-line report would break a log or a terminal line), else the
    exception's type name; `redact`ed, as libraries quote the URLs they failed on."""
    text = next((line for line in str(error).splitlines() if line.strip()), "")
    text = redact(" ".join(text.split()))
    return text or (type(error).__name__ if isinstance(error, BaseException) else "error")


# The userinfo of a URL (``scheme://user:password@`` or ``scheme://user@``): RFC 3986 userinfo
# holds no '/', '?', '#' or '@', so a path with an '@' in it (s3://bucket/key@v2) is left alone.
_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/?#@]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every ``scheme://user:password@host`` in it made ``scheme://***@host``:
    store URLs and endpoints may carry credentials, which no message, log or repr may show."""
    return _USERINFO.sub(r"\1***@", text)


def one_line(what: str | None, error: BaseException | str) -> str:
    """The line a user reads about `error`; ``charlm: <cause>`` when `what` is empty."""
    return f"{PROGRAM}: {what}: {cause(error)}" if what else f"{PROGRAM}: {cause(error)}"


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
