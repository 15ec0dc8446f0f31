"""Fetching feeds over HTTP from a local server: conditional GET, errors, redirects, limits."""

from __future__ import annotations

import gzip
import pickle
import re
import socket
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime, timezone

import pytest
from feedserver import ATOM_TYPE, Reply, atom, atom_entry, conditional, repeated, rss, rss_item

from ingestion.feed_fetch import (
    FeedError,
    FetchConfig,
    PermanentFeedError,
    TransientFeedError,
    Validators,
    fetch_feed,
    is_transient,
    retry_if_transient,
)
from ingestion.feeds import poll_feed

MB = 1_000_000
WHEN = datetime(2003, 10, 1, 2, 0, tzinfo=timezone.utc)
FEED = rss([
    rss_item("Council approves bridge plan", guid="urn:t:1", link="http://n.invalid/1", pub=WHEN),
    rss_item("Rain expected across the coast", guid="urn:t:2", pub=WHEN),
])


def test_normal_rss_fetch_parses_items(feed_server):
    url = feed_server.serve("/rss.xml", Reply(body=FEED))
    poll = poll_feed(url)
    assert poll.fetch.status == 200 and poll.fetch.modified
    assert poll.fetch.final_url == url and poll.fetch.redirects == ()
    assert [i.title for i in poll.items] == ["Council approves bridge plan",
                                            "Rain expected across the coast"]
    assert poll.counts() == {"not_modified": 0, "fetched": 2, "accepted": 2, "duplicates": 0,
                             "rejected": 0, "undated": 0}
    sent = feed_server.hits("/rss.xml")[0].headers
    assert "if-none-match" not in sent and "if-modified-since" not in sent
    assert "charlm" in sent["user-agent"]


def test_normal_atom_fetch(feed_server):
    body = atom([atom_entry("Storm damage bill rises", id="urn:a:1", link="http://n.invalid/a",
                            updated="2003-10-01T10:00:00Z")])
    poll = poll_feed(feed_server.serve("/atom", Reply(body=body, content_type=ATOM_TYPE)))
    (item,) = poll.items
    assert (item.guid, item.link, item.title) == ("urn:a:1", "http://n.invalid/a",
                                                  "Storm damage bill rises")


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
def test_unchanged_feed_costs_one_conditional_request_per_poll(feed_server, validator):
    etag = '"v1-abc"' if validator == "etag" else None
    modified = "Wed, 01 Oct 2003 02:00:00 GMT" if validator == "last_modified" else None
    url = feed_server.serve("/c.xml", conditional(FEED, etag=etag, last_modified=modified))

    first = poll_feed(url)
    assert len(first.items) == 2
    assert first.fetch.validators == Validators(etag, modified)
    validators = first.fetch.validators
    for _ in range(10):
        poll = poll_feed(url, validators)
        assert poll.fetch.status == 304 and not poll.fetch.modified
        assert poll.fetch.body is None and poll.feed is None and poll.items == ()
        assert poll.counts()["not_modified"] == 1 and poll.counts()["fetched"] == 0
        validators = poll.fetch.validators
        assert validators == Validators(etag, modified)  # kept for the next poll

    hits = feed_server.hits("/c.xml")
    assert len(hits) == 11
    header, value = ("if-none-match", etag) if etag else ("if-modified-since", modified)
    assert all(h.headers.get(header) == value for h in hits[1:])


def test_changed_feed_after_304_returns_new_body_and_validators(feed_server):
    url = feed_server.serve("/v.xml", conditional(FEED, etag='"v1"'))
    validators = poll_feed(url).fetch.validators
    changed = rss([rss_item("Fresh headline on the hour", guid="urn:t:9")])
    feed_server.serve("/v.xml", conditional(changed, etag='"v2"'))
    poll = poll_feed(url, validators)
    assert poll.fetch.status == 200 and poll.fetch.validators.etag == '"v2"'
    assert [i.guid for i in poll.items] == ["urn:t:9"]


def test_500_is_transient_and_a_second_call_succeeds(feed_server):
    url = feed_server.serve("/flaky", [Reply(500, b"oops", content_type="text/plain"),
                                       Reply(body=FEED)])
    with pytest.raises(TransientFeedError) as caught:
        fetch_feed(url)
    assert is_transient(caught.value)
    assert str(caught.value).startswith(url + ": ") and "HTTP 500" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert len(poll_feed(url).items) == 2


def test_429_is_transient_with_retry_after(feed_server):
    url = feed_server.serve("/busy", Reply(429, b"", headers={"Retry-After": "120"}))
    with pytest.raises(TransientFeedError) as caught:
        fetch_feed(url)
    assert caught.value.retry_after_s == 120.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_other_4xx_are_permanent(feed_server, status):
    url = feed_server.serve("/gone", Reply(status, b"no", content_type="text/plain"))
    with pytest.raises(PermanentFeedError, match=f"HTTP {status}") as caught:
        fetch_feed(url)
    assert not is_transient(caught.value) and caught.value.url == url


def test_server_slower_than_timeout_is_transient(feed_server):
    url = feed_server.serve("/slow", Reply(body=FEED, delay_s=1.5))
    start = time.monotonic()
    with pytest.raises(TransientFeedError, match="timed out after 0.2 s"):
        fetch_feed(url, config=FetchConfig(timeout_s=0.2))
    assert time.monotonic() - start < 1.2


def test_trickling_body_is_cut_off_by_the_total_timeout(feed_server):
    # each byte arrives well within the read timeout, but the whole body would take 20 s
    trickle = Reply(body=lambda: (b"<" for _ in range(200)), chunk_delay_s=0.1)
    url = feed_server.serve("/trickle", trickle)
    start = time.monotonic()
    with pytest.raises(TransientFeedError, match="within 0.5 s"):
        fetch_feed(url, config=FetchConfig(timeout_s=1.0, total_timeout_s=0.5))
    assert time.monotonic() - start < 2.0


def test_connection_refused_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed.xml"  # nothing listens there any more
    with pytest.raises(TransientFeedError, match="connection failed") as caught:
        fetch_feed(url, config=FetchConfig(timeout_s=2))
    assert caught.value.url == url


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_to_another_path_is_followed(feed_server, status):
    target = feed_server.serve("/new/feed.xml", conditional(FEED, etag='"r1"'))
    url = feed_server.serve("/old", Reply(status, b"", headers={"Location": "/new/feed.xml"}))
    poll = poll_feed(url)
    assert poll.fetch.final_url == target and poll.fetch.url == url
    assert poll.fetch.redirects == ((status, target),)
    assert poll.fetch.moved_permanently == (status in (301, 308))
    assert len(poll.items) == 2
    # the conditional headers survive the redirect
    again = poll_feed(url, poll.fetch.validators)
    assert again.fetch.status == 304
    assert feed_server.hits("/new/feed.xml")[-1].headers["if-none-match"] == '"r1"'


def test_redirect_body_is_never_read(feed_server):
    feed_server.serve("/feed.xml", Reply(body=FEED))
    redirect = Reply(302, repeated(50 * MB), headers={"Location": "/feed.xml"})
    url = feed_server.serve("/moved", redirect)
    peak = _peak_bytes(lambda: poll_feed(url))
    assert peak < 2 * MB, f"peak heap {peak / MB:.1f} MB: the redirect's 50 MB body was read"


def test_redirect_loop_is_permanent(feed_server):
    feed_server.serve("/a", Reply(302, b"", headers={"Location": "/b"}))
    url = feed_server.serve("/b", Reply(302, b"", headers={"Location": "/a"}))
    with pytest.raises(PermanentFeedError, match="more than 3 redirects"):
        fetch_feed(url, config=FetchConfig(max_redirects=3))
    assert len(feed_server.requests) == 4  # the first request and 3 followed hops


def test_redirect_to_non_http_is_permanent(feed_server):
    url = feed_server.serve("/ftp", Reply(301, b"", headers={"Location": "ftp://x.invalid/f"}))
    with pytest.raises(PermanentFeedError, match="non-http"):
        fetch_feed(url)


@pytest.mark.parametrize("url", ["ftp://example.invalid/feed", "not a url", "file:///etc/passwd"])
def test_bad_urls_are_permanent(url):
    with pytest.raises(PermanentFeedError) as caught:
        fetch_feed(url)
    assert str(caught.value).startswith(url)


def test_malformed_xml_is_permanent(feed_server):
    url = feed_server.serve("/broken", Reply(body=b"<rss version='2.0'><channel><title>x</chan"))
    with pytest.raises(PermanentFeedError, match="malformed feed") as caught:
        poll_feed(url)
    assert str(caught.value).startswith(url + ": ")


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/xhtml+xml",
                                          "application/json", "image/png"])
def test_wrong_content_type_is_permanent_and_body_not_downloaded(feed_server, content_type):
    url = feed_server.serve("/page", Reply(body=FEED, content_type=content_type))
    media = content_type.split(";")[0]
    with pytest.raises(PermanentFeedError, match=re.escape(f"served as {media}")) as caught:
        poll_feed(url)
    assert str(caught.value).startswith(url)


@pytest.mark.parametrize("content_type", [
    "application/rss+xml", "application/atom+xml", "application/xml", "text/xml",
    "text/xml; charset=ISO-8859-1", "application/rdf+xml", "application/octet-stream",
    "binary/octet-stream", "text/plain", None,
])
def test_feed_content_types_are_accepted(feed_server, content_type):
    url = feed_server.serve("/ok", Reply(body=FEED, content_type=content_type))
    assert len(poll_feed(url).items) == 2


def test_gzip_encoded_feed_is_inflated(feed_server):
    url = feed_server.serve("/gz", Reply(body=gzip.compress(FEED),
                                         headers={"Content-Encoding": "gzip"}))
    poll = poll_feed(url)
    assert poll.fetch.body == FEED and len(poll.items) == 2
    assert feed_server.hits("/gz")[0].headers["accept-encoding"] == "gzip"


def test_unknown_content_encoding_is_permanent(feed_server):
    url = feed_server.serve("/br", Reply(body=b"\x00\x01", headers={"Content-Encoding": "br"}))
    with pytest.raises(PermanentFeedError, match="Content-Encoding 'br'"):
        fetch_feed(url)


def _peak_bytes(call) -> int:
    """Peak Python heap growth while `call()` runs (the server thread's included)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _refused(url: str, config: FetchConfig | None = None) -> PermanentFeedError:
    with pytest.raises(PermanentFeedError) as caught:
        fetch_feed(url, config=config or FetchConfig())
    return caught.value


def test_50mb_body_without_length_is_refused_while_streaming(feed_server):
    url = feed_server.serve("/huge", Reply(body=repeated(50 * MB)))
    errors = []
    peak = _peak_bytes(lambda: errors.append(_refused(url)))
    message = str(errors[0])
    assert message == f"{url}: response body exceeds the limit of 10 MiB (10485760 bytes)"
    assert peak < 16 * MB, f"peak heap {peak / MB:.1f} MB while refusing a 50 MB body"

    # a tighter limit tightens the bound: memory follows the limit, not the body
    peak = _peak_bytes(lambda: _refused(url, FetchConfig(max_bytes=1024 * 1024)))
    assert peak < 3 * MB, f"peak heap {peak / MB:.1f} MB with a 1 MiB limit"


def test_50mb_body_with_content_length_is_refused_before_reading(feed_server):
    url = feed_server.serve("/huge", Reply(body=b"x" * (50 * MB), content_type="text/xml"))
    start = time.monotonic()
    peak = _peak_bytes(lambda: _refused(url))
    assert time.monotonic() - start < 5
    message = str(_refused(url))
    assert message.startswith(f"{url}: response body exceeds the limit of 10 MiB")
    assert "Content-Length: 50000000" in message
    assert peak < 2 * MB


def test_gzip_bomb_is_refused_with_memory_bounded(feed_server):
    bomb = gzip.compress(b"\n" * (50 * MB), compresslevel=9)  # ~50 KB on the wire
    url = feed_server.serve("/bomb", Reply(body=bomb, headers={"Content-Encoding": "gzip"}))
    errors = []
    peak = _peak_bytes(lambda: errors.append(_refused(url)))
    assert "exceeds the limit of 10 MiB" in str(errors[0])
    assert peak < 16 * MB, f"peak heap {peak / MB:.1f} MB while refusing a gzip bomb"


def test_body_at_the_limit_is_accepted(feed_server):
    url = feed_server.serve("/exact", Reply(body=FEED))
    assert fetch_feed(url, config=FetchConfig(max_bytes=len(FEED))).body == FEED
    assert "exceeds" in str(_refused(url, FetchConfig(max_bytes=len(FEED) - 1)))


def test_304_to_an_unconditional_request_is_permanent(feed_server):
    url = feed_server.serve("/odd", Reply(304, content_type=None))
    with pytest.raises(PermanentFeedError, match="unconditional"):
        fetch_feed(url)


def test_fetch_config_rejects_nonsense():
    with pytest.raises(ValueError, match="max_bytes"):
        FetchConfig(max_bytes=0)
    with pytest.raises(ValueError, match="timeouts"):
        FetchConfig(timeout_s=0)


def test_retry_condition_retries_transient_errors_only():
    from prefect.states import Completed, Failed

    url = "http://feeds.invalid/rss.xml"
    # Prefect's task engine wraps a raised exception as Failed(data=exception)
    assert retry_if_transient(None, None, Failed(data=TransientFeedError(url, "HTTP 503")))
    assert not retry_if_transient(None, None, Failed(data=PermanentFeedError(url, "HTTP 404")))
    assert not retry_if_transient(None, None, Failed(data=RuntimeError("a bug")))
    assert not retry_if_transient(None, None, Completed(data=1))
    assert is_transient(TransientFeedError(url, "x")) and not is_transient(FeedError(url, "x"))
    assert not is_transient(None)


def test_feed_errors_survive_pickling():
    for error in (TransientFeedError("http://f.invalid/x", "HTTP 503\nlater", retry_after_s=30.0),
                  PermanentFeedError("http://f.invalid/x", "HTTP 404")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.url == error.url and is_transient(copy) == is_transient(error)
    assert copy.problem == "HTTP 404" and "\n" not in str(error)
    assert pickle.loads(pickle.dumps(TransientFeedError("u", "p", 30.0))).retry_after_s == 30.0


def test_ingestion_does_not_import_prefect():
    code = ("import sys, ingestion.feed_fetch, ingestion.feeds, ingestion.style; "
            "assert 'prefect' not in sys.modules, 'prefect imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
