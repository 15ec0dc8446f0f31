"""The ingest-feed flow: a dataset version and one event per publish, retries only on
transient errors, per-feed counts and the buffer's state in the dashboard."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from feedserver import Reply, conditional, rss, rss_item

import tasks.feeds
from flows.feeds import BUFFER_KEY, POLLS_KEY, ingest_feed
from storage import Store
from tasks.events import DATASET_PUBLISHED

pytestmark = pytest.mark.usefixtures("prefect_api")
PUB = datetime(2024, 5, 1, 20, 0, tzinfo=timezone.utc)


def document(n: int, prefix: str = "Flow story") -> bytes:
    return rss([rss_item(f"{prefix} {i} 'in quotes'", guid=f"urn:{prefix}:{i}", pub=PUB)
                for i in range(n)])


def events_for(read_events, dataset_id: str) -> list[dict]:
    resource = f"charlm.dataset.{dataset_id}"
    return [e for e in read_events(DATASET_PUBLISHED, resource)
            if e["resource"]["prefect.resource.id"] == resource]


def test_300_new_items_publish_one_version_and_emit_one_event(
        tmp_path, feed_server, read_events, read_artifact) -> None:
    storage = str(tmp_path / "store")
    url = feed_server.serve("/top.xml", conditional(document(300), etag='"top-1"'))

    run = ingest_feed(urls=[url], storage=storage)  # min_new 200 by default
    [dataset_id] = [m["id"] for m in Store(storage).versions("datasets")]
    assert run.dataset_id == dataset_id and run.event_id is not None
    [event] = events_for(read_events, dataset_id)
    assert event["id"] == run.event_id
    assert event["payload"]["new_rows"] == 300 and event["payload"]["sources"] == [url]

    polls = read_artifact(POLLS_KEY)
    assert polls is not None and url in str(polls.data) and "300" in str(polls.data)
    buffer = read_artifact(BUFFER_KEY)
    assert buffer is not None and "items waiting" in str(buffer.data)

    again = ingest_feed(urls=[url], storage=storage)  # unchanged: a 304, nothing published
    assert again.dataset_id is None and again.event_id is None
    assert again.feeds[0].counts.not_modified == 1
    assert len(Store(storage).versions("datasets")) == 1
    assert len(events_for(read_events, dataset_id)) == 1


def test_transient_errors_are_retried_4xx_are_not_and_the_run_fails_naming_the_url(
        tmp_path, feed_server, monkeypatch) -> None:
    quick = tasks.feeds.poll_into_buffer.with_options(retry_delay_seconds=[0.1, 0.1, 0.1])
    monkeypatch.setattr(tasks.feeds, "poll_into_buffer", quick)
    storage = str(tmp_path / "store")
    flaky = feed_server.serve("/flaky.xml", [Reply(503, b"busy", content_type="text/plain"),
                                             Reply(500, b"oops", content_type="text/plain"),
                                             Reply(200, document(3, "Flaky"))])
    gone = feed_server.serve("/gone.xml", Reply(410, b"gone", content_type="text/plain"))
    down = feed_server.serve("/down.xml", Reply(502, b"bad gateway", content_type="text/plain"))

    state = ingest_feed(urls=[gone, flaky, down], min_new=1, storage=storage,
                        return_state=True)
    assert state.is_failed()
    assert "2 of 3 feed(s) failed" in state.message
    assert f"{gone}: HTTP 410" in state.message and f"{down}: HTTP 502" in state.message
    assert len(feed_server.hits("/flaky.xml")) == 3  # two transient failures, then success
    assert len(feed_server.hits("/gone.xml")) == 1  # a 4xx is not retried
    assert len(feed_server.hits("/down.xml")) == 4  # 1 + 3 retries
    [dataset] = Store(storage).versions("datasets")  # the good feed was still published
    assert dataset["summary"]["new_rows"] == 3
