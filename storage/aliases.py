"""Aliases: the only mutable names in the store, and the history of their changes.

An alias (``latest``, ``champion``, ...) is a text file ``<root>/<kind>/.aliases/<name>``
holding one version id, replaced atomically (see fsutil.replace_file) under the kind's lock.
Every change made through `Store.set_alias` is also appended, with its reason, to the kind's
alias history ``<root>/<kind>/.alias-history.jsonl`` (one JSON object per line: time,
alias, id, previous, reason), so a reader can tell who crowned the champion and why; a
decision that keeps an alias where it is (a challenger that lost) is recorded by setting it to
its own target (id == previous). `Store.set_alias(..., expect=...)` is a compare-and-swap:
the alias moves only if, under the lock, it still holds what the caller expected.
Publishing's own alias updates (``latest`` on every publish) are not logged: the version
list already says the same.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from storage.errors import StorageError
from storage.fsutil import replace_file
from storage.ids import check_alias_name, is_version_id
from storage.layout import ALIAS_HISTORY_FILE, ALIASES_DIR

__all__ = [
    "UNCHECKED",
    "Unchecked",
    "alias_names",
    "append_history",
    "check_alias_list",
    "history_line",
    "parse_history",
    "read_alias",
    "read_history",
    "write_alias",
]


class Unchecked(enum.Enum):
    UNCHECKED = "unchecked"


# Store.set_alias's default `expect`: move the alias whatever it holds. A sentinel, not None,
# because None means "the alias must not exist yet".
UNCHECKED = Unchecked.UNCHECKED


def alias_names(kind_dir: Path) -> list[str]:
    """Names of the aliases of the kind at `kind_dir`, sorted."""
    try:
        names = os.listdir(kind_dir / ALIASES_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith("."))


def read_alias(kind_dir: Path, kind: str, name: str) -> str | None:
    """The version id alias `name` holds (None when there is no such alias)."""
    alias_path = kind_dir / ALIASES_DIR / name
    try:
        text = alias_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StorageError(f"cannot read {kind} alias {name!r}: {error}") from None
    if not is_version_id(text):
        raise StorageError(
            f"{kind} alias file {alias_path} does not contain a version id: {text[:80]!r}"
        )
    return text


def write_alias(kind_dir: Path, name: str, version_id: str) -> None:
    """Point alias `name` at `version_id` (atomic replace; the caller holds the kind lock)."""
    aliases_dir = kind_dir / ALIASES_DIR
    aliases_dir.mkdir(exist_ok=True)
    replace_file(aliases_dir / name, f"{version_id}\n".encode())


def append_history(kind_dir: Path, name: str, version_id: str, previous: str | None,
                   reason: str) -> None:
    """Record one alias change (the caller holds the kind lock); fsynced before returning."""
    with open(kind_dir / ALIAS_HISTORY_FILE, "ab") as handle:
        handle.write(history_line(name, version_id, previous, reason))
        handle.flush()
        os.fsync(handle.fileno())


def history_line(name: str, version_id: str, previous: str | None, reason: str) -> bytes:
    """One alias change as a line of the alias history."""
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "alias": name, "id": version_id, "previous": previous, "reason": reason}
    return (json.dumps(record, sort_keys=True) + "\n").encode()


def read_history(kind_dir: Path, name: str | None = None) -> list[dict]:
    """Recorded changes of alias `name` (of every alias when None), oldest first."""
    try:
        data = (kind_dir / ALIAS_HISTORY_FILE).read_bytes()
    except FileNotFoundError:
        return []
    return parse_history(data, name)


def parse_history(data: bytes, name: str | None = None) -> list[dict]:
    """The records of alias `name` (every alias when None) in an alias history's bytes.

    A torn last line (a crash while appending) is skipped.
    """
    lines = data.decode("utf-8", "replace").splitlines()
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and (name is None or record.get("alias") == name):
            records.append(record)
    return records


def check_alias_list(aliases: Sequence[str]) -> list[str]:
    """`aliases` as a list of valid, distinct names; StorageError naming a bad one."""
    if isinstance(aliases, str) or not isinstance(aliases, Sequence):
        raise StorageError(f"aliases must be a list of names, got {aliases!r}")
    names: list[str] = []
    for name in aliases:
        check_alias_name(name)
        if name not in names:
            names.append(name)
    return names
