"""What goes wrong in the store (exceptions, and the `Problem`s verify finds), and the one way
any error becomes a user's line: `one_line(what, error)`, ``charlm: <what failed>: <cause>``,
on a terminal or in a flow run's log alike. The exceptions are ``ValueError`` subclasses, so
the CLI reports them as user errors. This module is at the bottom of the import graph, so
every layer can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Problem:
    """One inconsistency `Store.verify` found (it reports them all rather than raising)."""

    kind: str
    id: str
    file: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.kind}/{self.id}" + (f"/{self.file}" if self.file else "")
        return f"{where}: {self.reason}"
