"""Names used by the store: artifact kinds, version ids and alias names.

Version ids look like ``20261128-123456-123456-a1b2c3``: the UTC creation time down to the
microsecond followed by 24 random bits. Sorting ids as strings sorts them by creation time, and
the random suffix keeps ids unique across processes that publish in the same microsecond.
"""

from __future__ import annotations

import re
import secrets
import threading
from datetime import datetime, timedelta, timezone

from storage.errors import StorageError

KINDS = ("datasets", "models", "evaluations", "generations")

_ID_RE = re.compile(r"\d{8}-\d{6}-\d{6}-[0-9a-f]{6}")
_ID_TIME_FORMAT = "%Y%m%d-%H%M%S-%f"
_ALIAS_RE = re.compile(r"[a-z0-9_-]{1,64}")
# Reserved so that a ref is never ambiguous: what could be (a prefix of) a version id (digits,
# hex letters and dashes, a digit first) and what starts with a date, like an id to a reader.
_ID_LIKE_RE = re.compile(r"[0-9][0-9a-f-]*|[0-9]{8}.*")

_last_time: datetime | None = None
_last_time_lock = threading.Lock()


def check_kind(kind: object) -> str:
    """Return ``kind`` if it is one of KINDS, else raise StorageError naming it."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise StorageError(f"unknown artifact kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def new_version_id(now: datetime | None = None) -> str:
    """Return a fresh version id, strictly increasing within this process."""
    global _last_time
    with _last_time_lock:
        moment = now or datetime.now(timezone.utc)
        # Two ids from one process must sort in creation order even if the clock stalls or
        # steps back a little, so never reuse or go below the previous timestamp.
        if _last_time is not None and moment <= _last_time:
            moment = _last_time + timedelta(microseconds=1)
        _last_time = moment
    return f"{moment.strftime(_ID_TIME_FORMAT)}-{secrets.token_hex(3)}"


def id_time(version_id: str) -> datetime:
    """The UTC creation time encoded in a version id."""
    assert is_version_id(version_id), version_id
    return datetime.strptime(version_id[:22], _ID_TIME_FORMAT).replace(tzinfo=timezone.utc)


def is_version_id(text: object) -> bool:
    return isinstance(text, str) and _ID_RE.fullmatch(text) is not None


def looks_like_id_prefix(text: str) -> bool:
    return _ID_LIKE_RE.fullmatch(text) is not None


def check_alias_name(name: object) -> str:
    """Return ``name`` if it is a valid alias name, else raise StorageError naming it."""
    if not isinstance(name, str) or _ALIAS_RE.fullmatch(name) is None:
        raise StorageError(f"bad alias name {name!r}: use 1-64 characters from a-z, 0-9, "
                           "'_' and '-'")
    if looks_like_id_prefix(name):
        raise StorageError(f"bad alias name {name!r}: it looks like a version id (names that "
                           "start with a date, or with a digit and use only 0-9, a-f and '-', "
                           "are reserved for ids)")
    return name


def is_alias_name(text: object) -> bool:
    """Whether ``text`` is a syntactically valid alias name (see check_alias_name)."""
    return isinstance(text, str) and _ALIAS_RE.fullmatch(text) is not None and \
        not looks_like_id_prefix(text)
