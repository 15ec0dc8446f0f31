"""The `ingest-feed` flow: live RSS/Atom feeds -> the store's buffer -> dataset versions.

Run every 10 minutes by the `ingest-feed/poll` deployment (concurrency limit 1). Each run
is `tasks.feeds.ingest_feeds` (the operation `charlm ingest-feed` runs too): one
``poll-feed`` task per feed (conditional GET; retried with exponential backoff on network
errors and 5xx, never on 4xx), then ``publish-buffer``, which publishes the buffer as a
dataset version once ``min_new`` headlines wait or the oldest has waited
``max_wait_hours``. A published version emits `charlm.dataset.published`, whose trigger
starts `train-headlines`.

Prefect UI: one log line per feed (fetched, new, duplicates, rejected, undated, or "not
modified"), the `ingest-feed-polls` table artifact (the same counts) and the
`ingest-feed-buffer` table artifact (items waiting, the oldest one's age, the condition
that publishes next). A failing feed is logged in one line naming its URL; the others are
still polled and published, then the run fails listing the failed feeds.
"""

from __future__ import annotations

from prefect import flow
from pydantic import NonNegativeFloat, PositiveInt

from tasks import presets
from tasks.common import open_store
from tasks.events import emit_dataset_published
from tasks.feeds import FeedRun, ingest_feeds
from tasks.report import publish_table

FLOW_NAME = "ingest-feed"
POLLS_KEY = "ingest-feed-polls"
BUFFER_KEY = "ingest-feed-buffer"


@flow(name=FLOW_NAME, description="Poll headline feeds into the buffer; publish it as a "
                                  "dataset version when enough has arrived.")
def ingest_feed(urls: tuple[str, ...] = presets.FEED_URLS,
                min_new: PositiveInt = presets.FEED_MIN_NEW,
                max_wait_hours: NonNegativeFloat = presets.FEED_MAX_WAIT_HOURS,
                drift: bool = True, storage: str | None = None) -> FeedRun:
    """Poll `urls` into the store's feed buffer, then publish the buffer as a dataset version
    if at least `min_new` headlines wait or the oldest has waited `max_wait_hours`.

    Args:
        urls: RSS 2.0 or Atom feed URLs (default: ABC News "Just In" and "Top Stories").
        min_new: publish once this many new headlines wait in the buffer.
        max_wait_hours: publish anyway once the oldest waiting headline is this old.
        drift: score the champion on a published version's new headlines (before the
            "dataset published" event starts a retrain).
        storage: artifact store root (default: $CHARLM_STORAGE or ./charlm-store).
    """
    run = ingest_feeds(storage, list(urls), min_new, max_wait_hours, drift=drift)
    publish_table([r.row() for r in run.feeds], key=POLLS_KEY,
                  description="ingest-feed: this poll, per feed")
    publish_table([run.buffer.row()], key=BUFFER_KEY,
                  description=f"ingest-feed buffer: {run.buffer.describe()}")
    if run.dataset_id is not None:
        summary = open_store(storage).manifest("datasets", run.dataset_id)["summary"]
        run.event_id = emit_dataset_published(
            storage, run.dataset_id,
            {"new_rows": summary["new_rows"], "sources": sorted(summary["feed"]["sources"])})
    run.raise_for_errors()
    return run
