"""Fetching one live headline feed over HTTP, safely: conditional GET within limits.

Pure of Prefect and of the store: `fetch_feed` GETs one URL and returns a `FetchResult`
(the body, or "not modified"); the caller keeps the `Validators` between polls, and
`ingestion.feeds` parses what came back. Every failure, here and in parsing, is a
`FeedError` whose one-line message starts with the URL; `TransientFeedError` (worth retrying
later) and `PermanentFeedError` (retrying cannot help) split them, and `retry_if_transient`
is a ready Prefect ``retry_condition_fn``.

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
"""

from __future__ import annotations

import contextlib
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from charlm.config import require
from storage.errors import cause

__all__ = [
    "FeedError",
    "FetchConfig",
    "FetchResult",
    "PermanentFeedError",
    "TransientFeedError",
    "Validators",
    "fetch_feed",
    "is_transient",
    "retry_if_transient",
]

_MIB = 1024 * 1024
_STEP = 64 * 1024  # most bytes inflated at once
_TRANSIENT_STATUSES = frozenset({408, 429})  # plus every 5xx
_FEED_STATUSES = frozenset({200, 203})
_OCTET_STREAMS = frozenset({"application/octet-stream", "binary/octet-stream", "text/plain"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


class FeedError(Exception):
    """A feed could not be fetched or read; the message is one line starting with the URL."""

    transient = False

    def __init__(self, url: str, problem: str) -> None:
        problem = cause(problem)  # one line, whatever the library said
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
        require(self, ">= 0", "max_redirects")


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
