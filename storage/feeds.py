"""The live feeds' state in the store: validators per feed URL and the buffer of feed items
(fetching, parsing, normalisation and dedup rules are ingestion's: ingestion/feed*.py).

Files (names: storage.layout.FeedFiles, under ``<root>/feeds/``):

- ``items.jsonl``: the buffer, append-only, never rewritten: one JSON object per line per
  accepted feed item, with the fields of `BufferedItem` (dates in ISO format; ``seq`` 1, 2,
  3, ... in arrival order). A last line without its newline is the torn write of a killed
  process: readers ignore it and the next append cuts it off. It keeps every item ever
  accepted, so it is also the index of every guid and link stored (~200 bytes an item).
- ``published.json``: ``{"through": seq, "dataset_id": id, "at": time}``: every item up to
  ``seq`` is in a dataset version. Replaced atomically after each publish.
- ``validators.json``: ``{url: {"etag": ..., "last_modified": ..., "saved_at": ...}}``
  for each feed's next conditional GET. Replaced atomically.
- ``.lock``: the lease held while any of them changes (`FeedState.locked`, storage.feed_files).

Exactly once, across kills at any moment (tasks/feeds.py follows this order):

1. new items are appended to ``items.jsonl`` and fsynced *before* the feed's validators
   are saved: a kill before the fsync loses only what the next poll fetches again (the old
   validators make the server send it again); after it, dedup by guid keeps them single;
2. a dataset version made from the buffer records its last item in its manifest
   (``params[BUFFER_PARAM]["through"]``) and is published with "latest" on it, atomically;
3. ``published.json`` is then advanced. `FeedState.published_through` is the larger of it
   and the ``through`` of every dataset in the lineage of "latest", so a kill between 2
   and 3 cannot publish items twice; a version published without moving "latest" (by
   hand, ``aliases=()``) never marks items published.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from functools import partial
from typing import Any

from storage.errors import Problem, StorageError
from storage.feed_files import ObjectFeedFiles
from storage.layout import FeedFiles

__all__ = ["BUFFER_PARAM", "BufferedItem", "FeedState"]

BUFFER_PARAM = "feed_buffer"  # a dataset version's params[BUFFER_PARAM]["through"]: last seq in it
_ITEMS, _VALIDATORS, _PUBLISHED = FeedFiles.names()[:3]
_FIELDS = "seq guid link title headline publish_date dated source fetched_at".split()


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
    record = {name: getattr(item, name) for name in _FIELDS}  # in _FIELDS' order
    record["publish_date"] = item.publish_date.isoformat()
    record["fetched_at"] = item.fetched_at.astimezone(timezone.utc).isoformat()
    return json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"


def _decode(line: bytes) -> BufferedItem:
    record = json.loads(line)
    if not isinstance(record, dict) or sorted(record) != sorted(_FIELDS):
        raise ValueError(f"expected the fields {', '.join(_FIELDS)}")
    fetched_at = datetime.fromisoformat(record["fetched_at"])
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at has no timezone")
    item = BufferedItem(**{**record, "fetched_at": fetched_at,
                           "publish_date": date.fromisoformat(record["publish_date"])})
    if not (isinstance(item.seq, int) and item.seq > 0 and isinstance(item.guid, str)
            and item.guid and isinstance(item.headline, str) and item.headline
            and isinstance(item.dated, bool)):
        raise ValueError("bad seq, guid, headline or dated")
    return item


class FeedState:
    """The feed files of `store` (a `storage.Store`, or anything with ``versions``,
    ``aliases`` and a ``backend``). Reads work any time; changes (`append`, `save_validators`,
    `mark_published`) need the lock, which is not re-entrant: ``with state.locked(): ...``
    once around reading what to change and changing it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.io = ObjectFeedFiles(store.backend)
        self._held = False
        self._tokens: dict[str, object] = {}  # file name -> what this holder last read

    @contextmanager
    def locked(self) -> Iterator[FeedState]:
        with self.io.locked():
            self._held = True
            self._tokens = {}
            try:
                yield self
            finally:
                self._held = False

    def _read(self, name: str) -> bytes | None:
        data, token = self.io.read(name)
        if self._held:
            # Writes swap against the holder's first read: a lapsed holder cannot write stale news.
            self._tokens.setdefault(name, token)
        return data

    def _read_json(self, name: str, default: Any) -> Any:
        data = self._read(name)
        if data is None:
            return default
        try:
            return json.loads(data)
        except ValueError as error:  # UnicodeDecodeError included
            raise StorageError(f"{self.io.where}/{name}: not valid JSON ({error})") from None

    def _write(self, name: str, data: bytes) -> None:
        self._tokens[name] = self.io.write(name, data, self._tokens[name])

    def _read_items(self) -> tuple[list[BufferedItem], int]:
        """(every complete item, the byte length of the complete lines)."""
        data = self._read(_ITEMS) or b""
        end = data.rfind(b"\n") + 1  # a torn last line (no newline) is not an item yet
        items = []
        for number, line in enumerate(data[:end].splitlines(), 1):
            try:
                items.append(_decode(line))
            except (ValueError, TypeError, KeyError) as error:
                raise StorageError(f"{self.io.where}/{_ITEMS}: line {number} is not a feed "
                                   f"item ({error})") from None
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
        if numbered:
            self._tokens[_ITEMS] = self.io.append(_ITEMS, b"".join(map(_encode, numbered)), end,
                                                  self._tokens[_ITEMS])
        return numbered

    def published_through(self) -> int:
        """The last `seq` already in a dataset version (0 when none is): see step 3 of the
        module docstring."""
        cursor = self._read_json(_PUBLISHED, {})
        through = int(cursor.get("through", 0)) if isinstance(cursor, dict) else 0
        manifests = {m["id"]: m for m in self.store.versions("datasets")}
        pending = [self.store.aliases("datasets").get("latest")]  # only its lineage counts
        while pending:
            manifest = manifests.pop(pending.pop() or "", None)  # each one visited once
            if manifest is None:
                continue
            pending += manifest["parents"].get("datasets", [])
            params = manifest["params"].get(BUFFER_PARAM)
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
        cursor = self._read_json(_PUBLISHED, {})
        if isinstance(cursor, dict) and int(cursor.get("through", 0)) >= through:
            return
        record = {"through": through, "dataset_id": dataset_id,
                  "at": datetime.now(timezone.utc).isoformat()}
        self._write(_PUBLISHED, json.dumps(record, indent=1).encode() + b"\n")

    def validators(self, url: str) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) saved for `url`; (None, None) when nothing was saved."""
        saved = self._read_json(_VALIDATORS, {}).get(url) or {}
        return saved.get("etag"), saved.get("last_modified")

    def save_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        """Keep `url`'s validators for its next conditional request. Needs the lock."""
        assert self._held, "FeedState.save_validators needs the lock (FeedState.locked)"
        table = self._read_json(_VALIDATORS, {})
        saved = table.get(url, {})
        if (saved.get("etag"), saved.get("last_modified")) == (etag, last_modified):
            return  # unchanged (a 304): no write
        table[url] = {"etag": etag, "last_modified": last_modified,
                      "saved_at": datetime.now(timezone.utc).isoformat()}
        self._write(_VALIDATORS, json.dumps(table, indent=1, sort_keys=True).encode() + b"\n")

    def problems(self) -> list[Problem]:
        """What is wrong with the feed files (for Store.verify): unreadable lines or JSON,
        numbering out of order, a guid stored twice. A torn last line is not a problem."""
        problem = partial(Problem, "feeds", "state")  # (name, reason)
        found = []
        for name in (_VALIDATORS, _PUBLISHED):
            try:
                self._read_json(name, {})
            except StorageError as error:
                found.append(problem(name, str(error)))
        try:
            items = self.items()
        except StorageError as error:
            return [*found, problem(_ITEMS, str(error))]
        seen: dict[str, int] = {}
        for expected, item in enumerate(items, 1):
            if item.seq != expected:
                found.append(problem(_ITEMS, f"item {item.seq} where {expected} was expected"))
            if item.guid in seen:
                found.append(problem(_ITEMS, f"guid {item.guid!r} stored twice (items "
                                             f"{seen[item.guid]} and {item.seq})"))
            seen.setdefault(item.guid, item.seq)
        return found
