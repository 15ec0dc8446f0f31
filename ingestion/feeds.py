"""Live headline feeds (RSS 2.0 / Atom): fetch one URL safely, parse it into `FeedItem`s.

Pure of Prefect and of the store: `fetch_feed` does the HTTP, `parse_feed` turns bytes into
items, `poll_feed` chains them; the caller keeps the `Validators` between polls and decides
what is new. Every failure is a `FeedError` whose one-line message starts with the URL;
`TransientFeedError` (worth retrying later) and `PermanentFeedError` (retrying cannot help)
split them, and `retry_if_transient` is a ready Prefect ``retry_condition_fn``.

Fetching rules (`FetchConfig` holds the limits):

- Conditional GET: the previous response's ``ETag`` / ``Last-Modified`` go back as
  ``If-None-Match`` / ``If-Modified-Since``; a 304 is "not modified" and carries no body.
- Time: every network wait (connect, each read) is bounded by ``timeout_s``, and the clock
  of the whole fetch (redirects and body included) is checked after each response and each
  body chunk against ``total_timeout_s``, so a fetch ends within about
  ``total_timeout_s + timeout_s`` even when a server trickles one byte at a time.
- Redirects (301, 302, 303, 307, 308) are followed by hand, at most ``max_redirects`` hops
  and only to http(s) URLs; their bodies are never read (httpx's own redirect following
  reads each one whole, unbounded).
- Size: at most ``max_bytes`` of body, counted after decompression and enforced while
  streaming: a larger ``Content-Length`` is refused before any body byte is read, and a
  body without one is cut off as soon as it passes the limit, so memory holds at most the
  limit plus one network chunk (64 KiB). ``gzip`` is accepted and inflated here in 64 KiB
  steps (a 50 KB gzip bomb cannot expand to 50 MB in memory; httpx's decoder would inflate
  each chunk whole); other content codings are refused.
- Content type: feeds are served under many types, so the rule refuses only what is
  certainly not a feed. Accepted: no Content-Type; any XML type (``text/xml``,
  ``application/xml``, ``application/rss+xml``, ``application/atom+xml``,
  ``application/rdf+xml``, any ``*+xml``); ``text/plain``; ``application/octet-stream``
  and ``binary/octet-stream`` (generic downloads and S3's default). Refused: HTML and
  XHTML (``text/html``, ``application/xhtml+xml``: a web page, a login wall or an error
  page, never a feed even when a browser shows one) and every other type (JSON, images,
  PDF, ...), before the body is downloaded. What is accepted must still parse as a feed.
- Status: 200 and 203 carry a feed; 304 answers a conditional request. 5xx, 429 and 408
  are transient (the server may recover; ``Retry-After`` is kept when given); every other
  status (404, 410, 401, 403, 400, ...) is permanent. Connection failures and timeouts are
  transient; a bad URL, too many redirects, an oversized body, a refused content type or a
  document that is not a feed are permanent.

Parsing rules (feedparser does the XML; `parse_feed`):

- A document feedparser reads no entries from is an error when it is malformed (bozo) or
  not a feed at all (an HTML page, a stray XML document); a well-formed feed with an empty
  channel is fine (zero items). A malformed document that still yields entries (say, cut
  off after some items) is accepted and its complaint kept in `ParsedFeed.warning`.
  feedparser's complaints about a non-XML Content-Type (the rule above decides that) or a
  wrong declared charset it recovered from are not problems.
- ``title``: markup stripped and HTML entities decoded when the title is HTML (Atom
  ``type="html"``/``"xhtml"``, or an RSS title in which feedparser finds closing tags or
  entities: its conservative guess), then control characters dropped and whitespace
  collapsed; a plain-text title keeps ``<`` and ``&`` as written. An item without a title
  (missing, or empty after that) is rejected, counted by reason (`REJECT_REASONS`).
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

import contextlib
import hashlib
import io
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import httpx

__all__ = [
    "FeedError",
    "FeedItem",
    "FeedPoll",
    "FetchConfig",
    "FetchResult",
    "ParsedFeed",
    "PermanentFeedError",
    "REJECT_REASONS",
    "TIMEZONE",
    "TransientFeedError",
    "Validators",
    "fetch_feed",
    "is_transient",
    "parse_feed",
    "poll_feed",
    "retry_if_transient",
    "sydney_date",
]

TIMEZONE = "Australia/Sydney"  # where the ABC dates its headlines
NO_TITLE = "no title"
REJECT_REASONS: tuple[str, ...] = (NO_TITLE,)
_MIB = 1024 * 1024
_STEP = 64 * 1024  # most bytes inflated at once
_TRANSIENT_STATUSES = frozenset({408, 429})  # plus every 5xx
_FEED_STATUSES = frozenset({200, 203})
_OCTET_STREAMS = frozenset({"application/octet-stream", "binary/octet-stream", "text/plain"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# feedparser's complaints about a document it still read whole: the Content-Type is not an
# XML type (our own rule decides that), or the declared charset was wrong and another worked
_BENIGN = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


class FeedError(Exception):
    """A feed could not be fetched or read; the message is one line starting with the URL."""

    transient = False

    def __init__(self, url: str, problem: str) -> None:
        problem = " ".join(problem.split())  # one line, whatever the library said
        super().__init__(f"{url}: {problem}")
        self.url = url
        self.problem = problem

    def __reduce__(self):  # picklable (Prefect may ship a failed task's exception around)
        return type(self), (self.url, self.problem)


class TransientFeedError(FeedError):
    """Worth retrying later: connection failures, timeouts, 5xx, 429 and 408."""

    transient = True

    def __init__(self, url: str, problem: str, retry_after_s: float | None = None) -> None:
        super().__init__(url, problem)
        self.retry_after_s = retry_after_s  # the server's Retry-After, when it gave one

    def __reduce__(self):
        return type(self), (self.url, self.problem, self.retry_after_s)


class PermanentFeedError(FeedError):
    """Retrying cannot help: other 4xx, bad URL, not a feed, wrong type, too large."""


def is_transient(error: BaseException | None) -> bool:
    """True for errors worth retrying (a `TransientFeedError`), False for anything else."""
    return isinstance(error, FeedError) and error.transient


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect ``retry_condition_fn``: retry a failed task only on a transient feed error.

    Duck-typed on Prefect's ``State`` (``state.result(raise_on_failure=False)`` returns the
    exception of a failed run), so this module does not import Prefect.
    """
    try:
        error = state.result(raise_on_failure=False)
    except BaseException as exc:  # a result that cannot be read is its own answer
        error = exc
    return is_transient(error)


@dataclass(frozen=True)
class FetchConfig:
    """Limits of one feed fetch."""

    timeout_s: float = 10.0  # each connect / read wait
    total_timeout_s: float = 30.0  # the whole fetch, checked per response and body chunk
    max_bytes: int = 10 * _MIB  # decoded body; the ABC's feeds are ~30 KB
    max_redirects: int = 5
    user_agent: str = "charlm-feeds/0.1 (headline poller; conditional GET)"

    def __post_init__(self) -> None:
        if not self.timeout_s > 0 or not self.total_timeout_s > 0:
            raise ValueError(f"timeouts must be positive, got {self.timeout_s}, "
                             f"{self.total_timeout_s}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {self.max_bytes}")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {self.max_redirects}")


@dataclass(frozen=True)
class Validators:
    """What the server said identifies this version of the feed (kept between polls)."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        """The conditional-request headers these validators call for."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass(frozen=True)
class FetchResult:
    """One fetch: a body (status 200/203) or "not modified" (status 304, body None)."""

    url: str  # as asked for
    final_url: str  # after redirects
    status: int
    body: bytes | None
    content_type: str | None
    validators: Validators  # send these next time
    fetched_at: datetime  # UTC, when the response arrived
    redirects: tuple[tuple[int, str], ...] = ()  # (status, location) of each hop

    @property
    def modified(self) -> bool:
        return self.body is not None

    @property
    def moved_permanently(self) -> bool:
        """Every hop was a 301/308: the caller may update the stored URL to `final_url`."""
        return bool(self.redirects) and all(s in (301, 308) for s, _ in self.redirects)


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


# -- fetching ----------------------------------------------------------------------------

def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    return media or None


def _check_content_type(url: str, content_type: str | None) -> None:
    media = _media_type(content_type)
    if media is None or media in _OCTET_STREAMS:
        return
    if media in _HTML_TYPES:
        raise PermanentFeedError(url, f"served as {media}, a web page, not an RSS/Atom feed")
    if media.endswith("/xml") or media.endswith("+xml"):
        return
    raise PermanentFeedError(url, f"served as {media}, not an RSS/Atom feed type")


def _limit_text(limit: int) -> str:
    if limit % _MIB == 0:
        return f"{limit // _MIB} MiB ({limit} bytes)"
    return f"{limit} bytes"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _check_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise PermanentFeedError(url, f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise PermanentFeedError(url, "not an http(s) URL")
    return parsed


def _read_body(url: str, response: httpx.Response, config: FetchConfig, deadline: float) -> bytes:
    """The decoded body, refusing it as soon as it passes `config.max_bytes`."""
    limit = config.max_bytes
    too_large = f"response body exceeds the limit of {_limit_text(limit)}"
    length = response.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > limit:
        raise PermanentFeedError(url, f"{too_large} (Content-Length: {length})")
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if coding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif coding in ("", "identity"):
        inflater = None
    else:
        raise PermanentFeedError(url, f"unsupported Content-Encoding {coding!r}")

    body = bytearray()
    try:
        for chunk in response.iter_raw():
            if time.monotonic() > deadline:
                raise TransientFeedError(
                    url, f"body not received within {config.total_timeout_s:g} s")
            while chunk:
                room = limit - len(body)
                if inflater is None:
                    piece, chunk = chunk, b""
                else:
                    # at most room + 1 bytes in all, so an over-limit body shows without
                    # ever inflating more than the limit, in steps that add little on top
                    piece = inflater.decompress(chunk, min(room + 1, _STEP))
                    chunk = inflater.unconsumed_tail
                if len(piece) > room:
                    raise PermanentFeedError(url, too_large)
                body += piece
        if inflater is not None:
            piece = inflater.flush()
            if len(piece) > limit - len(body):
                raise PermanentFeedError(url, too_large)
            body += piece
            if not inflater.eof:
                raise PermanentFeedError(url, "gzip body is truncated")
    except zlib.error as exc:
        raise PermanentFeedError(url, f"gzip body is corrupt ({exc})") from None
    return bytes(body)


def _request_error(url: str, exc: httpx.HTTPError, config: FetchConfig) -> FeedError:
    if isinstance(exc, httpx.TimeoutException):
        return TransientFeedError(url, f"timed out after {config.timeout_s:g} s "
                                       f"({type(exc).__name__})")
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return PermanentFeedError(url, f"request failed ({type(exc).__name__}: {exc})")
    if isinstance(exc, httpx.TransportError):
        return TransientFeedError(url, f"connection failed ({type(exc).__name__}: {exc})")
    return PermanentFeedError(url, f"request failed ({type(exc).__name__}: {exc})")


def fetch_feed(
    url: str, validators: Validators | None = None, config: FetchConfig = FetchConfig()
) -> FetchResult:
    """GET one feed URL by the module's rules; raises `FeedError` (with the URL) on failure."""
    _check_url(url)
    validators = validators or Validators()
    deadline = time.monotonic() + config.total_timeout_s
    headers = {
        "User-Agent": config.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
                  "text/xml;q=0.9, */*;q=0.1",
        "Accept-Encoding": "gzip",
        **validators.headers(),
    }
    redirects: list[tuple[int, str]] = []
    timeout = httpx.Timeout(config.timeout_s)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            request = client.build_request("GET", url, headers=headers)
            while True:
                response = client.send(request, stream=True)
                with contextlib.closing(response):  # unread bodies (redirects) are dropped
                    if time.monotonic() > deadline:
                        raise TransientFeedError(
                            url, f"no response within {config.total_timeout_s:g} s")
                    if response.next_request is not None:  # a redirect with a Location
                        target = str(response.next_request.url)
                        redirects.append((response.status_code, target))
                        if len(redirects) > config.max_redirects:
                            raise PermanentFeedError(
                                url, f"more than {config.max_redirects} redirects "
                                     f"(last to {target})")
                        if response.next_request.url.scheme not in ("http", "https"):
                            raise PermanentFeedError(
                                url, f"redirected to a non-http(s) URL {target}")
                        request = response.next_request
                        continue
                    return _finish(url, response, validators, config, deadline, redirects)
    except FeedError:
        raise
    except httpx.InvalidURL as exc:
        raise PermanentFeedError(url, f"bad URL ({exc})") from None
    except httpx.HTTPError as exc:
        raise _request_error(url, exc, config) from None


def _finish(
    url: str,
    response: httpx.Response,
    sent: Validators,
    config: FetchConfig,
    deadline: float,
    redirects: list[tuple[int, str]],
) -> FetchResult:
    status = response.status_code
    where = f" (after redirect to {response.url})" if redirects else ""
    if status >= 500 or status in _TRANSIENT_STATUSES:
        raise TransientFeedError(
            url, f"HTTP {status} {response.reason_phrase}{where}",
            retry_after_s=_retry_after(response.headers.get("retry-after")),
        )
    received = Validators(
        etag=response.headers.get("etag"), last_modified=response.headers.get("last-modified")
    )
    if status == 304:
        if not sent.headers():
            raise PermanentFeedError(url, f"HTTP 304 to an unconditional request{where}")
        body, content_type = None, None
        # a 304 may refresh the validators; what it leaves out stays as it was
        received = Validators(received.etag or sent.etag,
                              received.last_modified or sent.last_modified)
    elif status in _FEED_STATUSES:
        content_type = response.headers.get("content-type")
        _check_content_type(url, content_type)
        body = _read_body(url, response, config, deadline)
    else:
        raise PermanentFeedError(url, f"HTTP {status} {response.reason_phrase}{where}")
    return FetchResult(
        url=url,
        final_url=str(response.url),
        status=status,
        body=body,
        content_type=content_type,
        validators=received,
        fetched_at=datetime.now(timezone.utc),
        redirects=tuple(redirects),
    )


# -- parsing -----------------------------------------------------------------------------

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
            raise PermanentFeedError(url, f"malformed feed ({_one_line(problem)})")
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
        warning=_one_line(problem) if problem is not None else None,
    )


def _one_line(problem: object) -> str:
    return " ".join(str(problem).split()) or type(problem).__name__


def poll_feed(
    url: str, validators: Validators | None = None, config: FetchConfig = FetchConfig()
) -> FeedPoll:
    """Fetch `url` conditionally and parse what came back; raises `FeedError`."""
    fetched = fetch_feed(url, validators, config)
    if fetched.body is None:
        return FeedPoll(fetch=fetched, feed=None)
    feed = parse_feed(fetched.body, url, fetched.content_type)
    return FeedPoll(fetch=fetched, feed=feed)
