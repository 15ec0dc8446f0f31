"""The live feeds' state in the store: validators per feed URL and the buffer of feed items.

Files (names: storage.layout.FeedFiles, under ``<root>/feeds/``):

- ``items.jsonl``: the buffer, append-only. One JSON object per line, one line per
  accepted feed item, never rewritten: ``seq`` (1, 2, 3, ... in arrival order), ``guid``,
  ``link``, ``title`` (as the feed wrote it), ``headline`` (the title in the training
  data's style: what a dataset version gets), ``publish_date`` (ISO date, Australia/Sydney),
  ``dated`` (false when the feed gave no date and ``publish_date`` is the fetch date),
  ``source`` (the feed URL that delivered it first) and ``fetched_at`` (ISO UTC time it
  entered the buffer). Every line ends with a newline; a last line without one is the torn
  write of a killed process: readers ignore it and the next append cuts it off. The file
  keeps every item ever accepted, published or not, so it is also the index of every
  guid and link already stored (~200 bytes an item).
- ``published.json``: ``{"through": seq, "dataset_id": id, "at": time}``: every item up to
  ``seq`` is in a dataset version. Replaced atomically after each publish.
- ``validators.json``: ``{url: {"etag": ..., "last_modified": ..., "saved_at": ...}}``,
  what each feed's server last said identifies its content (conditional GET). Replaced
  atomically.
- ``.lock``: held (`FeedState.locked`) while any of them changes.

Exactly once, across kills at any moment (the order the callers follow, tasks/feeds.py):

1. new items are appended to ``items.jsonl`` and fsynced *before* the feed's validators
   are saved: a kill before the fsync loses only what the next poll fetches again (the
   validators still name the old content, so the server sends it again), and a kill after
   it leaves items that dedup by guid keeps from being added twice;
2. a dataset version made from the buffer records the last item it holds in its
   manifest's params (``params["feed_buffer"]["through"]``, `BUFFER_PARAM`); publishing is
   atomic (storage.Store.publish), so the version is there whole or not at all;
3. ``published.json`` is then advanced. `FeedState.published_through` is the larger of it
   and every dataset manifest's ``through``, so a kill between 2 and 3 cannot publish the
   same items twice: the manifest already says they are in.

Storage does not know what a feed is: fetching, parsing, normalisation and dedup rules are
ingestion's (ingestion/feed_fetch.py, ingestion/feeds.py, ingestion/feed_rows.py), the order
above is tasks/feeds.py's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from storage.errors import StorageError
from storage.fsutil import fsync_dir, replace_file
from storage.layout import FeedFiles
from storage.locks import LOCK_TIMEOUT_S
from storage.verify import Problem

if TYPE_CHECKING:
    from storage.store import Store

__all__ = ["BUFFER_PARAM", "BufferedItem", "FeedState"]

BUFFER_PARAM = "feed_buffer"  # a dataset version's params[BUFFER_PARAM]["through"]: last seq in it
_FIELDS = ("seq", "guid", "link", "title", "headline", "publish_date", "dated", "source",
           "fetched_at")


@dataclass(frozen=True)
class BufferedItem:
    """One accepted feed item, as the buffer keeps it."""

    guid: str  # identity across polls and feeds
    link: str | None
    title: str  # as the feed wrote it (markup removed)
    headline: str  # the title in the training data's style: the dataset's text
    publish_date: date  # in Australia/Sydney
    dated: bool  # False: the feed gave no date, publish_date is the fetch date
    source: str  # the feed URL that delivered it first
    fetched_at: datetime  # UTC, when it entered the buffer
    seq: int = 0  # position in the buffer from 1, assigned by `FeedState.append`


def _encode(item: BufferedItem) -> bytes:
    record = {
        "seq": item.seq, "guid": item.guid, "link": item.link, "title": item.title,
        "headline": item.headline, "publish_date": item.publish_date.isoformat(),
        "dated": item.dated, "source": item.source,
        "fetched_at": item.fetched_at.astimezone(timezone.utc).isoformat(),
    }
    return json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"


def _decode(line: bytes) -> BufferedItem:
    record = json.loads(line)
    if not isinstance(record, dict) or sorted(record) != sorted(_FIELDS):
        raise ValueError(f"expected the fields {', '.join(_FIELDS)}")
    fetched_at = datetime.fromisoformat(record["fetched_at"])
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at has no timezone")
    item = BufferedItem(
        guid=record["guid"], link=record["link"], title=record["title"],
        headline=record["headline"], publish_date=date.fromisoformat(record["publish_date"]),
        dated=record["dated"], source=record["source"], fetched_at=fetched_at,
        seq=record["seq"],
    )
    if not (isinstance(item.seq, int) and item.seq > 0 and isinstance(item.guid, str)
            and item.guid and isinstance(item.headline, str) and item.headline
            and isinstance(item.dated, bool)):
        raise ValueError("bad seq, guid, headline or dated")
    return item


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default
    except (ValueError, UnicodeDecodeError) as error:
        raise StorageError(f"{path}: not valid JSON ({error})") from None


class FeedState:
    """The feed files of one store; see the module docstring for formats and the protocol.

    Reads work any time; changes (`append`, `save_validators`, `mark_published`) need the
    lock: ``with state.locked(): ...`` around reading what to change and changing it. The
    lock is not re-entrant: take it once per operation.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.files = FeedFiles.of(store.root)
        self._held = False

    # -- the lock ----------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[FeedState]:
        directory = self.files.items.parent
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(directory.parent)
        # A new FileLock per use: threads of one process exclude each other as processes do.
        lock = FileLock(self.files.lock, timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout:
            raise StorageError(f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for lock "
                               f"{self.files.lock}") from None
        try:
            self._remove_temporaries()
            self._held = True
            yield self
        finally:
            self._held = False
            lock.release()

    def _remove_temporaries(self) -> None:
        # replace_file's temporaries (.<name>.<owner>.<hex>.tmp) of a writer killed mid-way:
        # writers hold the lock, which we now hold, so none of them is live.
        for path in self.files.items.parent.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    # -- the buffer --------------------------------------------------------------------

    def _read_items(self) -> tuple[list[BufferedItem], int]:
        """(every complete item, the byte length of the complete lines)."""
        try:
            data = self.files.items.read_bytes()
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n") + 1  # a torn last line (no newline) is not an item yet
        items = []
        for number, line in enumerate(data[:end].splitlines(), 1):
            try:
                items.append(_decode(line))
            except (ValueError, TypeError, KeyError) as error:
                raise StorageError(
                    f"{self.files.items}: line {number} is not a feed item ({error})"
                ) from None
        return items, end

    def items(self) -> list[BufferedItem]:
        """Every item in the buffer, published or not, in arrival (`seq`) order."""
        return self._read_items()[0]

    def append(self, items: Sequence[BufferedItem]) -> list[BufferedItem]:
        """Append `items` durably (fsynced before returning), numbering them after the
        last one; returns them with their `seq`. Needs the lock."""
        assert self._held, "FeedState.append needs the lock (FeedState.locked)"
        existing, end = self._read_items()
        last = existing[-1].seq if existing else 0
        numbered = [replace(item, seq=last + i) for i, item in enumerate(items, 1)]
        if not numbered:
            return []
        path = self.files.items
        created = not path.exists()
        with open(path, "ab") as handle:
            if handle.tell() > end:  # cut off a killed writer's torn line first
                handle.truncate(end)
            handle.write(b"".join(map(_encode, numbered)))
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_dir(path.parent)
        return numbered

    def published_through(self) -> int:
        """The last `seq` already in a dataset version (0 when none is): the larger of
        ``published.json`` and every dataset manifest's ``params["feed_buffer"]``."""
        cursor = _read_json(self.files.published, {})
        through = int(cursor.get("through", 0)) if isinstance(cursor, dict) else 0
        for manifest in self.store.versions("datasets"):
            params = manifest.get("params", {}).get(BUFFER_PARAM)
            if isinstance(params, dict) and isinstance(params.get("through"), int):
                through = max(through, params["through"])
        return through

    def pending(self) -> list[BufferedItem]:
        """The items not yet in any dataset version, oldest first."""
        through = self.published_through()
        return [item for item in self.items() if item.seq > through]

    def mark_published(self, through: int, dataset_id: str) -> None:
        """Record that every item up to `through` is in dataset `dataset_id`. Needs the lock."""
        assert self._held, "FeedState.mark_published needs the lock (FeedState.locked)"
        cursor = _read_json(self.files.published, {})
        if isinstance(cursor, dict) and int(cursor.get("through", 0)) >= through:
            return
        record = {"through": through, "dataset_id": dataset_id,
                  "at": datetime.now(timezone.utc).isoformat()}
        replace_file(self.files.published, json.dumps(record, indent=1).encode() + b"\n")

    # -- validators --------------------------------------------------------------------

    def validators(self, url: str) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) saved for `url`; (None, None) when nothing was saved."""
        saved = _read_json(self.files.validators, {}).get(url) or {}
        return saved.get("etag"), saved.get("last_modified")

    def save_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        """Keep `url`'s validators for its next conditional request. Needs the lock."""
        assert self._held, "FeedState.save_validators needs the lock (FeedState.locked)"
        table = _read_json(self.files.validators, {})
        if table.get(url, {}).get("etag") == etag and \
                table.get(url, {}).get("last_modified") == last_modified:
            return  # unchanged (a 304): no write
        table[url] = {"etag": etag, "last_modified": last_modified,
                      "saved_at": datetime.now(timezone.utc).isoformat()}
        replace_file(self.files.validators,
                     json.dumps(table, indent=1, sort_keys=True).encode() + b"\n")

    # -- integrity ---------------------------------------------------------------------

    def problems(self) -> list[Problem]:
        """What is wrong with the feed files (for Store.verify): unreadable lines or JSON,
        numbering out of order, a guid stored twice. A torn last line is not a problem."""
        def problem(file: Path, reason: str) -> Problem:
            return Problem("feeds", "state", file.name, reason)

        found = []
        for path in (self.files.validators, self.files.published):
            try:
                _read_json(path, {})
            except StorageError as error:
                found.append(problem(path, str(error)))
        try:
            items = self.items()
        except StorageError as error:
            return [*found, problem(self.files.items, str(error))]
        seen: dict[str, int] = {}
        for expected, item in enumerate(items, 1):
            if item.seq != expected:
                found.append(problem(self.files.items, f"item {item.seq} where {expected} "
                                                       "was expected"))
            if item.guid in seen:
                found.append(problem(self.files.items, f"guid {item.guid!r} stored twice "
                                                       f"(items {seen[item.guid]} and "
                                                       f"{item.seq})"))
            seen.setdefault(item.guid, item.seq)
        return found
