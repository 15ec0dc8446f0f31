"""Parsing feed documents into FeedItems: titles, identities, dates, rejects, big feeds."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import pytest
from feedserver import atom, atom_entry, rss, rss_item, with_billion_laughs

from ingestion.feed_fetch import PermanentFeedError
from ingestion.feeds import FeedItem, parse_feed, sydney_date
from ingestion.reasons import UNEXPANDED_ENTITY
from ingestion.style import normalise

URL = "http://feeds.invalid/rss.xml"


def test_empty_channel_is_fine():
    for body in (rss([]), atom([])):
        feed = parse_feed(body, URL)
        assert feed.items == () and feed.entries == 0 and feed.warning is None
        assert feed.counts() == {"fetched": 0, "accepted": 0, "duplicates": 0, "rejected": 0,
                                 "undated": 0}


@pytest.mark.parametrize("body, problem", [
    (b"<rss version='2.0'><channel><title>cut off before any item", "malformed feed"),
    (b"this is not xml at all", "malformed feed"),
    (b'{"items": []}', "malformed feed"),
    (b"", "not an RSS or Atom feed"),
    (b"<html><body><p>Welcome</p></body></html>", "not an RSS or Atom feed"),
    (b"<?xml version='1.0'?><inventory><thing/></inventory>", "not an RSS or Atom feed"),
])
def test_documents_that_are_not_feeds_are_permanent_errors(body, problem):
    with pytest.raises(PermanentFeedError, match=problem) as caught:
        parse_feed(body, URL)
    assert str(caught.value).startswith(URL + ": ") and "\n" not in str(caught.value)


def test_bytes_that_look_like_a_path_are_not_opened(tmp_path):
    secret = tmp_path / "secret.xml"
    secret.write_bytes(rss([rss_item("Private headline", guid="p")]))
    # feedparser would read a file of that name if handed bytes; parse_feed must not
    with pytest.raises(PermanentFeedError):
        parse_feed(str(secret).encode(), URL)


def test_truncated_feed_with_entries_is_kept_with_a_warning():
    body = rss([rss_item("Ferry service resumes", guid="g1")])[:-30]  # cut inside </channel>
    feed = parse_feed(body, URL)
    assert [i.title for i in feed.items] == ["Ferry service resumes"]
    assert feed.warning  # feedparser's complaint, one line
    assert "\n" not in feed.warning


def test_items_without_titles_or_dates_are_counted():
    body = rss([
        rss_item(None, guid="no-title"),
        rss_item("   ", guid="blank-title"),
        rss_item(title_xml="<![CDATA[<b></b>]]>", guid="markup-only"),
        rss_item("Dated item", guid="d", pub=datetime(2003, 10, 1, 3, tzinfo=timezone.utc)),
        rss_item("Undated item", guid="u"),
        rss_item("Unreadable date", guid="bad", pub="sometime last week"),
    ])
    feed = parse_feed(body, URL)
    assert [i.guid for i in feed.items] == ["d", "u", "bad"]
    assert [i.published for i in feed.items] == [date(2003, 10, 1), None, None]
    assert feed.rejected == {"no title": 3} and feed.undated == 2
    assert feed.counts() == {"fetched": 6, "accepted": 3, "duplicates": 0, "rejected": 3,
                             "undated": 2, "rejected: no title": 3}


def test_a_title_with_an_unexpanded_entity_is_rejected_never_a_headline():
    """`&j;` of a billion-laughs DTD stays unexpanded: its entry is rejected with its own
    reason (before, the normalisation stored the headline "and j"); entities the parser
    did expand, XML's or HTML's, still make titles."""
    body = with_billion_laughs(rss([
        rss_item(title_xml="&j;", guid="laughs"),
        rss_item(title_xml="Storm &j; hits coast", guid="inside"),
        rss_item(title_xml="<![CDATA[Fish &j; chips]]>", guid="cdata"),
        rss_item(title_xml="Fish &amp; chips", guid="xml"),
        rss_item(title_xml="Caf&amp;eacute; opens &#38; closes", guid="html"),
    ]))
    feed = parse_feed(body, URL)
    assert [(i.guid, i.title) for i in feed.items] == [
        ("xml", "Fish & chips"), ("html", "Café opens & closes")]
    assert feed.rejected == {UNEXPANDED_ENTITY: 3}
    assert feed.counts()["rejected: unexpanded entity"] == 3
    assert all("and j" not in normalise(i.title) for i in feed.items)


def test_non_ascii_and_html_entity_titles_are_decoded():
    body = rss([
        rss_item(title_xml="Caf&#233; owner&#8217;s &lt;b&gt;$1.5m&lt;/b&gt; win", guid="1"),
        rss_item(title_xml="<![CDATA[PM's <em>$1.5b</em> plan &#8216;on track&#8217;]]>",
                 guid="2"),
        rss_item(title_xml="Rock &amp;amp; roll hall\n   opens", guid="3"),
        rss_item("Zürich talks — “no deal” yet", guid="4"),
        rss_item(title_xml="Maths: 3 &lt; 4 &amp; 5 &gt; 2", guid="5"),
        rss_item(title_xml="<![CDATA[<p>Two</p><p>paragraphs</p>]]>", guid="6"),
    ])
    titles = [i.title for i in parse_feed(body, URL).items]
    assert titles == [
        "Café owner’s $1.5m win",
        "PM's $1.5b plan ‘on track’",
        "Rock & roll hall opens",
        "Zürich talks — “no deal” yet",
        "Maths: 3 < 4 & 5 > 2",
        "Two paragraphs",
    ]
    assert [normalise(t) for t in titles[:4]] == [
        "cafe owners 15m win", "pms 15b plan on track", "rock and roll hall opens",
        "zurich talks no deal yet",
    ]


def test_atom_html_and_xhtml_titles():
    body = atom([
        atom_entry(title_xml="Budget &amp;lt;i&amp;gt;surplus&amp;lt;/i&amp;gt; grows",
                   title_type="html", id="h"),
        atom_entry(title_xml='<div xmlns="http://www.w3.org/1999/xhtml">Wet <b>weekend</b></div>',
                   title_type="xhtml", id="x"),
        atom_entry("Plain & simple <tag>", id="t"),
    ])
    assert [i.title for i in parse_feed(body, URL).items] == [
        "Budget <i>surplus</i> grows",  # the HTML text of an escaped tag is the tag itself
        "Wet weekend",
        "Plain & simple <tag>",
    ]


def test_guid_falls_back_to_link_then_to_a_title_hash():
    body = rss([
        rss_item("With guid", guid="  urn:x:1  ", link="http://n.invalid/1", permalink=False),
        rss_item("Link only", link="http://n.invalid/2"),
        rss_item("Title only"),
        rss_item("Permalink guid", guid="http://n.invalid/4", permalink=True),
    ])
    items = parse_feed(body, URL).items
    assert items[0] == FeedItem("urn:x:1", "http://n.invalid/1", "With guid", None)
    assert (items[1].guid, items[1].link) == ("http://n.invalid/2", "http://n.invalid/2")
    assert items[2].guid.startswith("title:") and items[2].link is None
    assert items[3].guid == "http://n.invalid/4"
    again = parse_feed(rss([rss_item("Title only")]), URL).items[0]
    assert again.guid == items[2].guid
    assert parse_feed(rss([rss_item("Other title")]), URL).items[0].guid != items[2].guid


def test_same_item_in_two_feeds_has_one_identity():
    when = datetime(2003, 10, 1, 20, tzinfo=timezone.utc)
    rss_feed = rss([rss_item("Shared story breaks", guid="http://n.invalid/s",
                             link="http://n.invalid/s", pub=when),
                    rss_item("Only in the first feed", guid="http://n.invalid/o")])
    atom_feed = atom([atom_entry("Shared story breaks", id="http://n.invalid/s",
                                 link="http://n.invalid/s", updated=when)])
    untagged = [rss([rss_item("Untagged shared story")]),
                atom([atom_entry("Untagged shared story")])]
    a, b = parse_feed(rss_feed, URL).items[0], parse_feed(atom_feed, URL).items[0]
    assert a == b and hash(a) == hash(b)
    assert len({*parse_feed(rss_feed, URL).items, *parse_feed(atom_feed, URL).items}) == 2
    c, d = (parse_feed(body, URL).items[0] for body in untagged)
    assert c == d


def test_repeated_guid_within_a_feed_counts_as_duplicate():
    body = rss([rss_item("First", guid="g"), rss_item("First again", guid="g"),
                rss_item("Second", guid="h")])
    feed = parse_feed(body, URL)
    assert [i.title for i in feed.items] == ["First", "Second"]
    assert feed.duplicates == 1 and feed.counts()["duplicates"] == 1


def test_relative_guids_do_not_depend_on_the_feed_url():
    body = rss([rss_item("Relative", guid="/news/7", link="/news/7")])
    items = [parse_feed(body, url).items[0] for url in (URL, "http://elsewhere.invalid/f.xml")]
    assert items[0] == items[1] and items[0].guid == "/news/7"


def test_non_ascii_feed_served_without_charset_decodes():
    body = rss([rss_item("Zürich café reopens", guid="z")])
    for content_type in ("text/xml", "application/octet-stream", "text/plain", None):
        feed = parse_feed(body, URL, content_type)
        assert feed.items[0].title == "Zürich café reopens" and feed.warning is None


@pytest.mark.parametrize("pub, sydney", [
    # 2003-10-01 20:00 UTC is 06:00 on the 2nd in Sydney (AEST, +10)
    ("Wed, 01 Oct 2003 20:00:00 GMT", date(2003, 10, 2)),
    ("Wed, 01 Oct 2003 13:59:00 +0000", date(2003, 10, 1)),
    ("Wed, 01 Oct 2003 14:00:00 +0000", date(2003, 10, 2)),
    ("Wed, 01 Oct 2003 09:00:00 -0500", date(2003, 10, 2)),  # 14:00 UTC
    ("Wed, 01 Oct 2003 08:59:00 EST", date(2003, 10, 1)),  # 13:59 UTC
    ("Thu, 02 Oct 2003 00:30:00 +1000", date(2003, 10, 2)),
    ("Wed, 01 Oct 2003 23:30:00 +1100", date(2003, 10, 1)),
    ("Wed, 01 Oct 2003 22:00:00 +0530", date(2003, 10, 2)),  # 16:30 UTC
    # daylight saving (AEDT, +11) from 26 Oct 2003: midnight is 13:00 UTC
    ("Thu, 15 Jan 2004 12:59:00 GMT", date(2004, 1, 15)),
    ("Thu, 15 Jan 2004 13:00:00 GMT", date(2004, 1, 16)),
    ("2003-10-01T23:30:00-05:00", date(2003, 10, 2)),  # W3C date in an RSS feed
])
def test_rss_pubdates_in_any_zone_map_to_the_sydney_date(pub, sydney):
    (item,) = parse_feed(rss([rss_item("Dated", guid="d", pub=pub)]), URL).items
    assert item.published == sydney


def test_atom_dates_prefer_published_over_updated():
    body = atom([
        atom_entry("Both", id="1", published="2003-10-01T20:00:00Z",
                   updated="2003-12-25T20:00:00Z"),
        atom_entry("Updated only", id="2", updated="2003-10-01T23:30:00-05:00"),
    ])
    assert [i.published for i in parse_feed(body, URL).items] == [date(2003, 10, 2),
                                                                  date(2003, 10, 2)]


def test_sydney_date_of_fetch_time():
    assert sydney_date(datetime(2003, 10, 1, 20, tzinfo=timezone.utc)) == date(2003, 10, 2)
    assert sydney_date(datetime(2003, 10, 1, 20, tzinfo=timezone(timedelta(hours=-5)))) == \
        date(2003, 10, 2)
    with pytest.raises(ValueError, match="naive"):
        sydney_date(datetime(2003, 10, 1))


def test_ten_thousand_item_feed_parses_in_reasonable_time():
    start_day = datetime(2003, 1, 1, tzinfo=timezone.utc)
    body = rss(rss_item(f"Generated headline number {i} &amp; more", guid=f"urn:n:{i}",
                        pub=start_day + timedelta(hours=i)) for i in range(10_000))
    start = time.monotonic()
    feed = parse_feed(body, URL)
    elapsed = time.monotonic() - start
    assert len(feed.items) == 10_000 and feed.undated == 0 and not feed.rejected
    assert feed.items[9_999].guid == "urn:n:9999"
    assert feed.items[9_999].published == sydney_date(start_day + timedelta(hours=9_999))
    assert elapsed < 20, f"10,000 items took {elapsed:.1f} s"
