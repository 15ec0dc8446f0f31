"""Live headline feeds (RSS 2.0 / Atom): parse a document into `FeedItem`s, poll a feed.

Pure of Prefect and of the store: `parse_feed` turns bytes into items, `poll_feed` chains
`ingestion.feed_fetch.fetch_feed` (the HTTP: conditional GET, limits, the `FeedError`s) and
`parse_feed`; the caller keeps the `Validators` between polls and decides what is new
(`ingestion.feed_rows`). A document that is not a feed is a `PermanentFeedError`.

Parsing rules (feedparser does the XML; `parse_feed`):

- A document feedparser reads no entries from is an error when it is malformed (bozo) or
  not a feed at all (an HTML page, a stray XML document); a well-formed feed with an empty
  channel is fine (zero items). A malformed document that still yields entries (say, cut
  off after some items) is accepted and its complaint kept in `ParsedFeed.warning`.
  feedparser's complaints about a non-XML Content-Type (`ingestion.feed_fetch`'s rule decides
  that) or a wrong declared charset it recovered from are not problems.
- ``title``: markup stripped and HTML entities decoded when the title is HTML (Atom
  ``type="html"``/``"xhtml"``, or an RSS title in which feedparser finds closing tags or
  entities: its conservative guess), then control characters dropped and whitespace
  collapsed; a plain-text title keeps ``<`` and ``&`` as written. An item without a title
  (missing, or empty after that) is rejected, and so is one whose title still holds an
  entity reference (``&j;``, ``&#38;``) that the parser left unexpanded (a DTD's entity,
  as in a billion-laughs document): both counted by reason (`REJECT_REASONS`,
  ingestion.reasons).
- ``guid``: the item's ``<guid>`` / Atom ``<id>``; failing that its link; failing that
  ``title:`` plus a blake2b hash of the cleaned title. It is the item's identity: the same
  story in two feeds gives the same guid. Relative guids and links resolve only against
  the document's own ``xml:base``, never the URL it was fetched from, so identities survive
  a feed moving. Repeats of a guid within one document are counted as duplicates and
  dropped (the first wins).
- ``published``: ``pubDate`` / ``published``, else ``updated``, as a date in
  Australia/Sydney (the ABC's zone, which `publish_date` uses); feedparser reads any
  timezone and hands over UTC, assuming UTC when the feed names none. None when missing or
  unreadable: the caller counts those (`ParsedFeed.undated`) and uses the fetch date,
  `sydney_date(FetchResult.fetched_at)`.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import feedparser

from ingestion.feed_fetch import (
    FetchConfig,
    FetchResult,
    PermanentFeedError,
    Validators,
    fetch_feed,
)
from ingestion.reasons import UNEXPANDED_ENTITY
from storage.errors import cause

__all__ = [
    "FeedItem",
    "FeedPoll",
    "ParsedFeed",
    "REJECT_REASONS",
    "TIMEZONE",
    "parse_feed",
    "poll_feed",
    "sydney_date",
]

TIMEZONE = "Australia/Sydney"  # where the ABC dates its headlines
NO_TITLE = "no title"
REJECT_REASONS: tuple[str, ...] = (NO_TITLE, UNEXPANDED_ENTITY)
# An entity reference still in a title after parsing and HTML decoding: the parser did not
# expand it (an entity of the document's DTD, which feedparser's XML parser refuses to
# expand, or a reference inside CDATA), so the text it stands for is unknown.
_ENTITY_RE = re.compile(r"&(?:[A-Za-z_][\w.:-]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")
# feedparser's complaints about a document it still read whole: the Content-Type is not an
# XML type (our own rule decides that), or the declared charset was wrong and another worked
_BENIGN = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


@dataclass(frozen=True)
class FeedItem:
    """One headline of a feed; `guid` is its identity across polls and feeds."""

    guid: str
    link: str | None
    title: str
    published: date | None  # in Australia/Sydney; None when the feed gives no usable date


@dataclass(frozen=True)
class ParsedFeed:
    """A feed document's items and what happened to the rest of its entries."""

    items: tuple[FeedItem, ...]
    entries: int  # entries in the document, whatever became of them
    rejected: Mapping[str, int] = field(default_factory=dict)  # reason -> entries
    duplicates: int = 0  # entries repeating an earlier guid of the same document
    undated: int = 0  # items (kept) without a usable date
    warning: str | None = None  # feedparser's complaint about a document it still read

    def counts(self) -> dict[str, int]:
        """Flat counts for logs and dashboards."""
        counts = {
            "fetched": self.entries,
            "accepted": len(self.items),
            "duplicates": self.duplicates,
            "rejected": sum(self.rejected.values()),
            "undated": self.undated,
        }
        counts.update({f"rejected: {r}": n for r, n in self.rejected.items()})
        return counts


@dataclass(frozen=True)
class FeedPoll:
    """One poll of one feed: the fetch, and the parsed document unless not modified."""

    fetch: FetchResult
    feed: ParsedFeed | None

    @property
    def url(self) -> str:
        return self.fetch.url

    @property
    def items(self) -> tuple[FeedItem, ...]:
        return self.feed.items if self.feed is not None else ()

    def counts(self) -> dict[str, int]:
        """`ParsedFeed.counts` plus ``not_modified`` (1 for a 304, when all else is 0)."""
        base = self.feed.counts() if self.feed is not None else ParsedFeed((), 0).counts()
        return {"not_modified": int(self.feed is None), **base}


def sydney_date(moment: datetime) -> date:
    """The calendar date of an aware datetime in Australia/Sydney."""
    if moment.tzinfo is None:
        raise ValueError(f"need an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(ZoneInfo(TIMEZONE)).date()


class _TextOf(HTMLParser):
    """The text of an HTML fragment: tags dropped, entities decoded, blocks spaced."""

    _BLOCKS = frozenset({"br", "p", "div", "li", "tr", "td", "th",
                         "h1", "h2", "h3", "h4", "h5", "h6"})
    _HIDDEN = frozenset({"script", "style"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def _html_text(fragment: str) -> str:
    if "<" not in fragment and "&" not in fragment:
        return fragment
    parser = _TextOf()
    parser.feed(fragment)
    parser.close()
    return "".join(parser.parts)


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _title_of(entry: Mapping[str, Any]) -> str:
    title = entry.get("title") or ""
    kind = (entry.get("title_detail") or {}).get("type", "text/plain")
    if kind in ("text/html", "application/xhtml+xml"):
        title = _html_text(title)
    return " ".join(_CONTROL_RE.sub("", title).split())


def _date_of(entry: Mapping[str, Any]) -> date | None:
    for key in ("published_parsed", "updated_parsed"):
        parsed = entry.get(key)
        if parsed is None:
            continue
        try:
            # feedparser's *_parsed are UTC struct_times; a leap second becomes :59
            moment = datetime(*parsed[:5], min(parsed[5], 59), tzinfo=timezone.utc)
            return sydney_date(moment)
        except (ValueError, OverflowError, TypeError):
            continue
    return None


def _guid_of(entry: Mapping[str, Any], link: str | None, title: str) -> str:
    guid = (entry.get("id") or "").strip()
    if guid:
        return guid
    if link:
        return link
    return "title:" + hashlib.blake2b(title.encode("utf-8"), digest_size=16).hexdigest()


def parse_feed(body: bytes, url: str, content_type: str | None = None) -> ParsedFeed:
    """The items of an RSS/Atom document; raises `PermanentFeedError` when it is not a feed.

    `url` names the feed in errors; `content_type` (the response's header) helps pick the
    character encoding. Relative links and guids are resolved only against the document's
    own ``xml:base``, never against `url`, so an item's identity does not change when its
    feed moves.
    """
    headers = {"content-type": content_type} if content_type else None
    # a stream, never bytes: feedparser would try to open bytes as a file name
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
    entries = parsed.get("entries") or []
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if isinstance(problem, _BENIGN):
        problem = None
    if not entries:
        if problem is not None:
            raise PermanentFeedError(url, f"malformed feed ({cause(problem)})")
        if not parsed.get("version"):
            raise PermanentFeedError(url, "not an RSS or Atom feed (no channel or feed root)")

    items: list[FeedItem] = []
    seen: set[str] = set()
    rejected = dict.fromkeys(REJECT_REASONS, 0)
    duplicates = undated = 0
    for entry in entries:
        title = _title_of(entry)
        if not title:
            rejected[NO_TITLE] += 1
            continue
        if _ENTITY_RE.search(title):
            rejected[UNEXPANDED_ENTITY] += 1  # never a headline: "&j;" would become "and j"
            continue
        link = (entry.get("link") or "").strip() or None
        guid = _guid_of(entry, link, title)
        if guid in seen:
            duplicates += 1
            continue
        seen.add(guid)
        published = _date_of(entry)
        undated += published is None
        items.append(FeedItem(guid=guid, link=link, title=title, published=published))
    return ParsedFeed(
        items=tuple(items),
        entries=len(entries),
        rejected={r: n for r, n in rejected.items() if n},
        duplicates=duplicates,
        undated=undated,
        warning=cause(problem) if problem is not None else None,
    )


def poll_feed(
    url: str, validators: Validators | None = None, config: FetchConfig = FetchConfig()
) -> FeedPoll:
    """Fetch `url` conditionally and parse what came back; raises `FeedError`."""
    fetched = fetch_feed(url, validators, config)
    if fetched.body is None:
        return FeedPoll(fetch=fetched, feed=None)
    feed = parse_feed(fetched.body, url, fetched.content_type)
    return FeedPoll(fetch=fetched, feed=feed)
