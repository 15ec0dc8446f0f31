"""The feed operation without Prefect: polls into the buffer, micro-batched dataset versions.

Feeds are generated here and served from 127.0.0.1 (tests/feedserver.py); requests are
counted at the server.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest
from feedserver import Reply, conditional, rss, rss_item

import tasks.feeds
from ingestion.split import split_of
from storage import Store
from storage.backend import DirectoryBackend
from storage.datasets import read_headlines
from storage.feeds import FeedState
from tasks.feeds import buffer_status, ingest_feeds, publish_buffer
from tasks.ingest import ingest_csvs

PUB = datetime(2024, 5, 1, 20, 0, tzinfo=timezone.utc)  # 2 May 06:00 in Sydney


def items(start: int, stop: int, prefix: str = "Story") -> list[str]:
    return [rss_item(f"{prefix} number {n}: 'quoted' & $1.{n}m", guid=f"urn:{prefix}:{n}",
                     pub=PUB) for n in range(start, stop)]


def versions(storage: str) -> list[str]:
    return [m["id"] for m in Store(storage).versions("datasets")]


def rows(storage: str, ref: str = "latest") -> pl.DataFrame:
    return read_headlines(Store(storage).path("datasets", ref)).collect()


def test_unchanged_feed_ten_polls_cost_ten_conditional_requests_and_publish_nothing(
        storage, feed_server) -> None:
    url = feed_server.serve("/just-in.xml", conditional(
        rss(items(0, 25)), etag='"v1"', last_modified="Wed, 01 May 2024 20:00:00 GMT"))
    first = ingest_feeds(storage, [url], min_new=25)
    assert first.dataset_id is not None and first.feeds[0].counts.new == 25
    before = versions(storage)

    for _ in range(10):
        run = ingest_feeds(storage, [url], min_new=25)
        assert run.dataset_id is None and run.errors == []
        assert run.feeds[0].counts.not_modified == 1 and run.feeds[0].counts.new == 0
    hits = feed_server.hits("/just-in.xml")
    assert len(hits) == 11
    assert "if-none-match" not in hits[0].headers
    assert all(h.headers.get("if-none-match") == '"v1"' for h in hits[1:])
    assert all(h.headers.get("if-modified-since") == "Wed, 01 May 2024 20:00:00 GMT"
               for h in hits[1:])
    assert versions(storage) == before
    assert len(Store(storage).feeds.items()) == 25


def test_300_new_items_publish_one_version_on_top_of_the_latest(storage, feed_server, tmp_path,
                                                               csv_file) -> None:
    csv = csv_file(tmp_path, "old.csv", b"20240501,story number 7 quoted and 17m\n"
                                        b"20030219,an old headline\n")
    previous = ingest_csvs.fn(storage, [str(csv)]).dataset_id
    url = feed_server.serve("/feed.xml", Reply(200, rss(items(0, 300))))

    run = ingest_feeds(storage, [url])  # min_new 200 by default
    assert run.feeds[0].counts.fetched == 300
    assert run.feeds[0].counts.new == 299  # story 7 is already in the dataset
    assert run.feeds[0].counts.duplicates == 1
    assert run.dataset_id is not None
    assert versions(storage) == [previous, run.dataset_id]
    manifest = Store(storage).manifest("datasets", run.dataset_id)
    assert manifest["parents"] == {"datasets": [previous]}
    assert manifest["params"]["feed_buffer"] == {"first": 1, "through": 299}
    assert manifest["summary"]["new_rows"] == 299
    assert manifest["summary"]["feed"]["sources"] == {url: 299}

    heads = rows(storage)
    assert heads.height == 2 + 299
    fed = heads.filter(pl.col("source") == url)
    assert fed["headline"][0] == "story number 0 quoted and 10m"  # normalised
    assert fed["publish_date"].unique().to_list() == [date(2024, 5, 2)]  # Sydney
    assert fed["split"].to_list() == [split_of(h) for h in fed["headline"].to_list()]
    assert sorted(fed["row"].to_list()) == list(range(1, 300))  # buffer seq

    again = ingest_feeds(storage, [url])  # served again in full (no validators)
    assert again.feeds[0].counts.new == 0 and again.feeds[0].counts.duplicates == 300
    assert again.dataset_id is None and len(versions(storage)) == 2


def test_the_same_item_in_two_feeds_is_stored_once(storage, feed_server) -> None:
    shared = rss_item("Shared story", guid="urn:shared", pub=PUB)
    retitled = rss_item("SHARED STORY!", guid="urn:other-id", pub=PUB)  # same text
    a = feed_server.serve("/a.xml", Reply(200, rss([shared, *items(0, 2, "A")])))
    b = feed_server.serve("/b.xml", Reply(200, rss([shared, retitled, *items(0, 2, "B")])))
    run = ingest_feeds(storage, [a, b], min_new=1)
    counts = {r.url: r.counts for r in run.feeds}
    assert (counts[a].new, counts[a].duplicates) == (3, 0)
    assert (counts[b].new, counts[b].duplicates) == (2, 2)
    heads = rows(storage)
    assert heads.filter(pl.col("headline") == "shared story").height == 1
    assert heads.filter(pl.col("headline") == "shared story")["source"].to_list() == [a]
    assert heads.height == 5


def test_undated_items_get_the_fetch_date_and_are_counted(storage, feed_server) -> None:
    url = feed_server.serve("/undated.xml", Reply(200, rss(
        [rss_item("Dated story", guid="d", pub=PUB), rss_item("Undated story", guid="u"),
         rss_item("Another undated story", guid="u2")])))
    before = datetime.now(timezone.utc)
    run = ingest_feeds(storage, [url], min_new=3)
    assert run.feeds[0].counts.undated == 2
    manifest = Store(storage).manifest("datasets", run.dataset_id)
    assert manifest["summary"]["feed"]["undated"] == 2
    buffered = {i.guid: i for i in Store(storage).feeds.items()}
    assert not buffered["u"].dated and buffered["d"].dated
    from ingestion.feeds import sydney_date
    assert buffered["u"].publish_date in {sydney_date(before),
                                          sydney_date(datetime.now(timezone.utc))}


def test_the_oldest_item_waiting_max_wait_publishes_a_small_batch(storage, feed_server) -> None:
    url = feed_server.serve("/slow.xml", Reply(200, rss(items(0, 3))))
    run = ingest_feeds(storage, [url], min_new=200, max_wait_hours=24)
    assert run.dataset_id is None
    assert run.buffer.waiting == 3 and not run.buffer.due
    assert "197 more" in run.buffer.next_publish()
    now = datetime.now(timezone.utc)
    assert publish_buffer.fn(storage, 200, 24, now=now + timedelta(hours=23)) is None
    later = buffer_status(storage, 200, 24, now=now + timedelta(hours=25))
    assert later.due and "waited" in later.reason()
    published = publish_buffer.fn(storage, 200, 24, now=now + timedelta(hours=25))
    assert published is not None and rows(storage, published).height == 3
    assert buffer_status(storage).waiting == 0


def test_one_bad_feed_never_blocks_the_others(storage, feed_server) -> None:
    good = feed_server.serve("/good.xml", Reply(200, rss(items(0, 4))))
    missing = feed_server.url("/gone.xml")  # 404
    page = feed_server.serve("/page.xml", Reply(200, b"<html><body>hi</body></html>",
                                                content_type="text/html"))
    broken = feed_server.serve("/broken.xml", Reply(200, b"<rss><channel><title>cut off</ti"))
    run = ingest_feeds(storage, [missing, page, good, broken], min_new=4)
    assert run.dataset_id is not None and rows(storage).height == 4
    assert len(run.errors) == 3
    for url, error in zip([missing, page, broken], run.errors):
        assert error.startswith(f"{url}: ") and "\n" not in error
    assert "404" in run.errors[0]
    with pytest.raises(RuntimeError, match="3 of 4 feed"):
        run.raise_for_errors()


def test_bad_batching_values_are_refused(storage) -> None:
    with pytest.raises(ValueError, match="min_new"):
        ingest_feeds(storage, ["http://127.0.0.1:9/x"], min_new=0)
    with pytest.raises(ValueError, match="max_wait_hours"):
        ingest_feeds(storage, ["http://127.0.0.1:9/x"], max_wait_hours=-1)
    with pytest.raises(ValueError, match="no feed URLs"):
        ingest_feeds(storage, [])


class Killed(BaseException):
    """Stands for a SIGKILL at one exact point (the crash test kills real processes)."""


def test_killed_after_publishing_before_marking_publishes_nothing_twice(
        storage, feed_server, monkeypatch) -> None:
    url = feed_server.serve("/feed.xml", Reply(200, rss(items(0, 5))))

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(FeedState, "mark_published", die)
    with pytest.raises(Killed):
        ingest_feeds(storage, [url], min_new=5)
    [published] = versions(storage)  # the version made it; its mark did not
    monkeypatch.undo()
    assert buffer_status(storage).waiting == 0  # the manifest says the items are in
    run = ingest_feeds(storage, [url], min_new=1)
    assert run.dataset_id is None and versions(storage) == [published]
    assert rows(storage).height == 5


def test_killed_at_the_commit_publishes_nothing_then_everything_once(
        storage, feed_server, monkeypatch) -> None:
    """The version and "latest" move in one commit: a kill just before it leaves nothing
    visible and every item pending (there is no moment between the two to adopt)."""
    url = feed_server.serve("/feed.xml", Reply(200, rss(items(0, 5))))
    real_put = DirectoryBackend.put

    def put(self, key, data, mode="overwrite"):
        if key.startswith("_log/") and isinstance(data, bytes) and b'"add"' in data:
            raise Killed
        return real_put(self, key, data, mode)

    monkeypatch.setattr(DirectoryBackend, "put", put)
    with pytest.raises(Killed):
        ingest_feeds(storage, [url], min_new=5)
    monkeypatch.undo()
    assert versions(storage) == [] and buffer_status(storage).waiting == 5
    run = ingest_feeds(storage, [url], min_new=5)
    assert versions(storage) == [run.dataset_id] and buffer_status(storage).waiting == 0
    assert rows(storage).height == 5 and Store(storage).verify() == []


def test_killed_after_appending_before_saving_validators_duplicates_nothing(
        storage, feed_server, monkeypatch) -> None:
    url = feed_server.serve("/feed.xml", conditional(rss(items(0, 5)), etag='"v1"'))

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(FeedState, "save_validators", die)
    with pytest.raises(Killed):
        ingest_feeds(storage, [url], min_new=1)
    monkeypatch.undo()
    assert len(Store(storage).feeds.items()) == 5  # appended durably before the kill
    run = ingest_feeds(storage, [url], min_new=1)
    assert "if-none-match" not in feed_server.hits("/feed.xml")[1].headers  # asks again
    assert run.feeds[0].counts.new == 0 and run.feeds[0].counts.duplicates == 5
    assert rows(storage).height == 5 and Store(storage).verify() == []
    ingest_feeds(storage, [url], min_new=1)
    assert feed_server.hits("/feed.xml")[2].headers.get("if-none-match") == '"v1"'


def test_a_csv_ingested_while_the_buffer_publishes_stays_in_latest(
        storage, feed_server, tmp_path, csv_file, monkeypatch) -> None:
    url = feed_server.serve("/feed.xml", Reply(200, rss(items(0, 5))))
    ingest_feeds(storage, [url], min_new=200)  # 5 items wait
    csv = csv_file(tmp_path, "racing.csv", b"20240502,a csv headline meanwhile\n")
    real_plan_rows = tasks.feeds.plan_rows
    raced: list[str] = []

    def plan_while_a_csv_lands(previous_dir, raw, config):
        if not raced:  # another writer publishes while this plan is being made
            raced.append(ingest_csvs.fn(storage, [str(csv)]).dataset_id)
        return real_plan_rows(previous_dir, raw, config)

    monkeypatch.setattr(tasks.feeds, "plan_rows", plan_while_a_csv_lands)
    published = publish_buffer.fn(storage, min_new=5)
    assert Store(storage).manifest("datasets", published)["parents"] == {"datasets": raced}
    assert sorted(rows(storage)["source"].to_list()) == sorted(["racing.csv"] + [url] * 5)


def test_a_published_micro_batch_records_drift_on_its_new_headlines(
        storage, feed_server, tmp_path, csv_file, publish_model) -> None:
    from tasks.drift import BATCH, DRIFT

    def drift_versions() -> list[dict]:
        return [m for m in Store(storage).versions("evaluations")
                if m["params"].get(DRIFT) == BATCH]

    first = ingest_csvs.fn(storage, [str(csv_file(tmp_path, "a.csv", b"20240501,council plan\n"
                                                  b"20240501,police probe\n"))])
    champion = publish_model(storage, first.dataset_id)
    url = feed_server.serve("/just-in.xml", Reply(200, rss(items(0, 7))))
    run = ingest_feeds(storage, [url], min_new=5)
    assert run.dataset_id is not None
    recorded = drift_versions()
    assert len(recorded) == 1
    assert recorded[0]["summary"]["new_rows"] == 7
    assert recorded[0]["parents"] == {"datasets": [run.dataset_id], "models": [champion]}
    # without drift, nothing is scored
    url = feed_server.serve("/top.xml", Reply(200, rss(items(7, 14, prefix="Top"))))
    quiet = ingest_feeds(storage, [url], min_new=5, drift=False)
    assert quiet.dataset_id is not None and len(drift_versions()) == 1
