"""Which feed items are new (guid, link, text in the style), and how they become dataset rows."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
from feedserver import RSS_TYPE, Reply, atom, atom_entry, rss, rss_item, with_billion_laughs

from ingestion.feed_fetch import FetchResult, Validators
from ingestion.feed_rows import FEED_CLEANING, raw_rows, select_new, stored_texts
from ingestion.feeds import FeedPoll, parse_feed, poll_feed
from ingestion.plan import plan_rows
from ingestion.reasons import EMPTY, TOO_LONG, UNEXPANDED_ENTITY
from ingestion.split import split_of
from storage.datasets import write_dataset
from storage.feeds import BufferedItem

URL = "http://feed.test/a.xml"
# 23:30 UTC on 30 April is 09:30 on 1 May in Sydney
FETCHED = datetime(2024, 4, 30, 23, 30, tzinfo=timezone.utc)


def poll_of(document: bytes, url: str = URL, at: datetime = FETCHED) -> FeedPoll:
    fetched = FetchResult(url, url, 200, document, RSS_TYPE, Validators(), at)
    return FeedPoll(fetched, parse_feed(document, url, RSS_TYPE))


def not_modified(url: str = URL) -> FeedPoll:
    return FeedPoll(FetchResult(url, url, 304, None, None, Validators('"x"'), FETCHED), None)


def numbered(items: list[BufferedItem]) -> list[BufferedItem]:
    return [BufferedItem(**{**i.__dict__, "seq": n}) for n, i in enumerate(items, 1)]


def test_new_items_are_normalised_dated_in_sydney_and_counted() -> None:
    document = rss([
        rss_item("PM's $1.5b plan 'on track'", guid="g1",
                 pub="Tue, 30 Apr 2024 22:00:00 +0000"),  # 08:00 on 1 May in Sydney
        rss_item("Storm hits coast", guid="g2"),  # no date
        rss_item(None, guid="g3"),  # no title
        rss_item("?!", guid="g4"),  # nothing left in the style
        rss_item("Storm hits coast", guid="g2"),  # the same guid again in the document
    ])
    new, counts = select_new(poll_of(document), [], None)
    assert [(i.guid, i.headline, i.title, i.publish_date, i.dated) for i in new] == [
        ("g1", "pms 15b plan on track", "PM's $1.5b plan 'on track'", date(2024, 5, 1), True),
        ("g2", "storm hits coast", "Storm hits coast", date(2024, 5, 1), False),
    ]
    assert all(i.source == URL and i.fetched_at == FETCHED and i.seq == 0 for i in new)
    assert counts.as_dict() == {
        "fetched": 5, "new": 2, "duplicates": 1, "rejected": 2, "undated": 1,
        "not_modified": 0, "rejected: no title": 1, f"rejected: {EMPTY}": 1,
    }
    assert "new 2" in counts.describe() and "undated 1" in counts.describe()


def test_not_modified_poll_adds_nothing() -> None:
    new, counts = select_new(not_modified(), [], None)
    assert new == [] and counts.not_modified == 1
    assert counts.describe() == "not modified (304)"


def test_too_long_titles_are_rejected() -> None:
    new, counts = select_new(poll_of(rss([rss_item("word " * 60, guid="long")])), [], None)
    assert new == [] and counts.rejected == {TOO_LONG: 1}


def test_duplicates_by_guid_link_and_text_against_the_buffer() -> None:
    first, _ = select_new(poll_of(rss([
        rss_item("Floods close highway", guid="a", link="http://site.test/a"),
        rss_item("Fire crews rest", guid="b", link="http://site.test/b"),
        rss_item("Rates held steady", guid="c"),
    ])), [], None)
    buffered = numbered(first)
    later = poll_of(rss([
        rss_item("Floods close highway (updated)", guid="a"),  # same guid, new title
        rss_item("Fire crews rest again", guid="b2", link="http://site.test/b"),  # same link
        rss_item("RATES HELD STEADY!", guid="c2"),  # the same text in another style
        rss_item("Brand new story", guid="d"),
        rss_item("Brand-new story", guid="e"),  # repeats "brand new story" within the poll
    ]), url="http://other.test/feed.xml")
    new, counts = select_new(later, buffered, None)
    assert [i.guid for i in new] == ["d"]
    assert new[0].source == "http://other.test/feed.xml"
    assert counts.duplicates == 4 and counts.new == 1


def test_texts_already_in_the_dataset_are_duplicates(tmp_path: Path) -> None:
    heads = pl.DataFrame({
        "publish_date": [date(2003, 2, 19)] * 3,
        "headline": ["council backs plan", "Mixed Case Headline, Stored As-Is", "other"],
        "split": ["train"] * 3, "source": ["old.csv"] * 3, "row": [1, 2, 3],
    })
    write_dataset(tmp_path, heads)
    assert stored_texts(tmp_path, ["council backs plan", "mixed case headline stored as is",
                                   "not there"]) == {"council backs plan",
                                                     "mixed case headline stored as is"}
    assert stored_texts(None, ["council backs plan"]) == set()
    document = atom([atom_entry("Council backs plan", id="urn:1"),
                     atom_entry("Mixed case headline: stored as-is", id="urn:2"),
                     atom_entry("Something else", id="urn:3",
                                updated=FETCHED - timedelta(days=1))])
    new, counts = select_new(poll_of(document), [], tmp_path)
    assert [i.headline for i in new] == ["something else"]
    assert new[0].publish_date == date(2024, 4, 30)
    assert counts.duplicates == 2


def test_raw_rows_plan_like_csv_rows_with_the_hash_split(tmp_path: Path) -> None:
    new, _ = select_new(poll_of(rss([rss_item(f"Headline number {n}", guid=f"g{n}",
                                              pub=FETCHED) for n in range(40)])), [], None)
    items = numbered(new)
    plan = plan_rows(None, raw_rows(items), FEED_CLEANING)
    assert plan.new_rows == 40 and plan.quarantined_rows == 0
    heads = plan.headlines
    assert heads["source"].unique().to_list() == [URL]
    assert heads["row"].to_list() == list(range(1, 41))
    assert heads["publish_date"].unique().to_list() == [date(2024, 5, 1)]
    assert heads["split"].to_list() == [split_of(h) for h in heads["headline"].to_list()]


def test_a_served_billion_laughs_feed_adds_no_entity_headline(feed_server) -> None:
    """Served over HTTP and polled as the pipeline polls: the entry titled `&j;` is
    counted under its own reason and never becomes the headline "and j"."""
    url = feed_server.serve("/laughs.xml", Reply(200, with_billion_laughs(rss([
        rss_item(title_xml="&j;", guid="laughs"),
        rss_item("Storm hits coast", guid="storm"),
    ]))))
    new, counts = select_new(poll_feed(url), [], None)
    assert [i.headline for i in new] == ["storm hits coast"]
    assert counts.as_dict()["rejected: " + UNEXPANDED_ENTITY] == 1
    assert f"rejected 1 ({UNEXPANDED_ENTITY}: 1)" in counts.describe()
