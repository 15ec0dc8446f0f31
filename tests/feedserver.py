"""Test helpers: an HTTP feed server on 127.0.0.1 (a thread) and generators of feed documents.

Every document is generated here from made-up headlines; nothing is copied from a real feed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape, quoteattr

RSS_TYPE = "application/rss+xml; charset=utf-8"
ATOM_TYPE = "application/atom+xml; charset=utf-8"


@dataclass
class Reply:
    """What the server answers to one request."""

    status: int = 200
    body: bytes | Callable[[], Iterable[bytes]] = b""  # a callable streams chunks
    content_type: str | None = RSS_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line
    chunk_delay_s: float = 0.0  # between streamed chunks
    length: bool = True  # send Content-Length for a bytes body


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # lowercased names


# A route answers with one Reply, a sequence of them (the last one repeats), or a function of
# the request.
Route = Reply | list[Reply] | Callable[[Request], Reply]


class FeedServer:
    """A threaded HTTP/1.0 server on a free port of 127.0.0.1; `close` stops it."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()})
                reply = server._reply(request)
                try:
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout or a refused body): expected

            def _send(self, reply: Reply) -> None:
                time.sleep(reply.delay_s)
                self.send_response(reply.status)
                if reply.content_type is not None:
                    self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                body = reply.body
                if isinstance(body, bytes) and reply.length and reply.status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if reply.status == 304:
                    return
                if isinstance(body, bytes):
                    self.wfile.write(body)
                    return
                for chunk in body():  # HTTP/1.0: the body ends when the connection closes
                    self.wfile.write(chunk)
                    time.sleep(reply.chunk_delay_s)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still sleeping must not hold teardown
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, route: Route) -> str:
        """Answer GET `path` with `route`; returns the full URL."""
        with self._lock:
            self.routes[path] = route
        return self.url(path)

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            route = self.routes.get(request.path)
            if isinstance(route, list):
                return route.pop(0) if len(route) > 1 else route[0]
        if route is None:
            return Reply(404, b"no such feed", content_type="text/plain")
        return route if isinstance(route, Reply) else route(request)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def conditional(body: bytes, etag: str | None = None, last_modified: str | None = None,
                content_type: str = RSS_TYPE) -> Callable[[Request], Reply]:
    """A route that answers 304 when the request's validators match, else 200 with them."""
    validators = {}
    if etag:
        validators["ETag"] = etag
    if last_modified:
        validators["Last-Modified"] = last_modified

    def route(request: Request) -> Reply:
        if (etag and request.headers.get("if-none-match") == etag) or (
            last_modified and request.headers.get("if-modified-since") == last_modified
        ):
            return Reply(304, headers=dict(validators), content_type=None)
        return Reply(200, body, content_type=content_type, headers=dict(validators))

    return route


# -- documents ---------------------------------------------------------------------------

# each format's document around its items: (head with a {title}, tail)
_DOCUMENTS = {
    "rss": ('<rss version="2.0"><channel><title>{title}</title>'
            "<link>http://example.invalid/</link><description>generated</description>",
            "</channel></rss>"),
    "atom": ('<feed xmlns="http://www.w3.org/2005/Atom"><title>{title}</title>'
             "<id>urn:test:feed</id><updated>2003-10-01T00:00:00Z</updated>",
             "</feed>"),
}


def _document(kind: str, children: Iterable[str], title: str) -> bytes:
    """A UTF-8 XML document of `kind` ("rss" or "atom") holding `children`."""
    head, tail = _DOCUMENTS[kind]
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + head.format(title=escape(title))
            + "".join(children) + tail).encode("utf-8")


def _element(tag: str, parts: list[str]) -> str:
    return f"<{tag}>" + "".join(parts) + f"</{tag}>"


def _title(title: str | None, title_xml: str | None, attrs: str = "") -> list[str]:
    """A <title> element (or none): `title` is escaped, `title_xml` goes in verbatim."""
    text = title_xml if title_xml is not None else None if title is None else escape(title)
    return [] if text is None else [f"<title{attrs}>{text}</title>"]


def rss_item(title: str | None = None, guid: str | None = None, link: str | None = None,
             pub: datetime | str | None = None, *, title_xml: str | None = None,
             permalink: bool | None = None) -> str:
    """One <item>; `title` is escaped, `title_xml` goes in verbatim (entities, CDATA)."""
    parts = _title(title, title_xml)
    if link is not None:
        parts.append(f"<link>{escape(link)}</link>")
    if guid is not None:
        attr = "" if permalink is None else f' isPermaLink="{str(permalink).lower()}"'
        parts.append(f"<guid{attr}>{escape(guid)}</guid>")
    if pub is not None:
        text = format_datetime(pub) if isinstance(pub, datetime) else pub
        parts.append(f"<pubDate>{escape(text)}</pubDate>")
    parts.append("<description>Generated for a test.</description>")
    return _element("item", parts)


def rss(items: Iterable[str], title: str = "Generated test feed") -> bytes:
    return _document("rss", items, title)


def atom_entry(title: str | None = None, id: str | None = None, link: str | None = None,
               updated: datetime | str | None = None, published: datetime | str | None = None,
               *, title_xml: str | None = None, title_type: str | None = None) -> str:
    parts = _title(title, title_xml, f" type={quoteattr(title_type)}" if title_type else "")
    if id is not None:
        parts.append(f"<id>{escape(id)}</id>")
    if link is not None:
        parts.append(f"<link href={quoteattr(link)}/>")
    for tag, value in (("published", published), ("updated", updated)):
        if value is not None:
            text = value.isoformat() if isinstance(value, datetime) else value
            parts.append(f"<{tag}>{escape(text)}</{tag}>")
    return _element("entry", parts)


def atom(entries: Iterable[str], title: str = "Generated test feed") -> bytes:
    return _document("atom", entries, title)


def repeated(total: int, chunk: bytes = b"<item><title>padding</title></item>" * 1800
             ) -> Callable[[], Iterator[bytes]]:
    """A streamed body of `total` bytes made of one reused chunk (no big buffer server-side)."""

    def chunks() -> Iterator[bytes]:
        yield b'<?xml version="1.0"?><rss version="2.0"><channel>'
        sent = 0
        view = memoryview(chunk)
        while sent < total:
            piece = view[: min(len(chunk), total - sent)]
            yield piece
            sent += len(piece)

    return chunks


BILLION_LAUGHS_DTD = (
    '<!DOCTYPE rss [\n <!ENTITY a "lol">\n'
    ' <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\n'
    ' <!ENTITY j "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">\n]>\n')


def with_billion_laughs(document: bytes) -> bytes:
    """`document` (from `rss`) declaring the nested entities of a billion-laughs attack, so
    that its items may reference `&j;`; a safe parser leaves the reference unexpanded."""
    head, rest = document.split(b"?>\n", 1)
    return head + b"?>\n" + BILLION_LAUGHS_DTD.encode() + rest
