"""The live-feed stage: poll feeds into the store's buffer, publish the buffer as dataset versions.

`ingest_feeds` is the operation `charlm ingest-feed` and the `ingest-feed` flow both run:

1. ``poll-feed`` (`poll_into_buffer`), one task per URL: a conditional GET with the
   validators saved for that URL, parse, keep the new items (ingestion.feed_rows), append
   them durably to the buffer, and only then save the new validators (storage.feeds says
   why this order loses and duplicates nothing when killed). Inside Prefect a transient
   failure (network, timeout, 5xx, 429, 408) is retried with exponential backoff
   (`presets.FEED_RETRIES`, `presets.FEED_RETRY_DELAY_S`); anything else (a 4xx, a
   document that is not a feed, a body over the size limit) fails at once. A failing feed
   is reported in one line naming its URL and the other feeds go on.
2. ``publish-buffer`` (`publish_buffer`): the one way the buffer becomes a dataset version:
   when at least ``min_new`` items wait or the oldest has waited ``max_wait_hours``. The
   version is planned and published like a CSV ingestion (ingestion.plan,
   `tasks.ingest.publish_on_latest`):
   parent = the latest version, splits by the hash rule, source = the feed URL.
3. `buffer_status`: what waits and when it will be published (logs, dashboard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from charlm.config import to_dict
from ingestion.feed_fetch import FeedError, FetchConfig, Validators, retry_if_transient
from ingestion.feed_rows import FEED_CLEANING, PollCounts, raw_rows, select_new, stored_texts
from ingestion.feeds import poll_feed
from ingestion.plan import plan_rows
from storage import cause, one_line
from storage.feeds import BUFFER_PARAM, BufferedItem, FeedState
from tasks import presets
from tasks.common import open_store, run_logger, run_task
from tasks.ingest import Publication, latest_dataset, publish_on_latest

__all__ = ["BufferStatus", "FeedResult", "FeedRun", "buffer_status", "check_batching",
           "ingest_feeds", "poll_into_buffer", "publish_buffer"]


def check_batching(min_new: int, max_wait_hours: float) -> None:
    """ValueError naming the bad value unless min_new >= 1 and max_wait_hours >= 0."""
    if isinstance(min_new, bool) or not isinstance(min_new, int) or min_new < 1:
        raise ValueError(f"min_new must be an integer >= 1, got {min_new!r}")
    if not max_wait_hours >= 0:  # also refuses NaN
        raise ValueError(f"max_wait_hours must be >= 0, got {max_wait_hours!r}")


@dataclass(frozen=True)
class BufferStatus:
    """The buffer's state, and when it becomes a dataset version."""

    waiting: int  # items not yet in a dataset version
    oldest: datetime | None  # when the oldest waiting item entered the buffer (UTC)
    stored: int  # items ever accepted
    min_new: int
    max_wait_hours: float
    now: datetime

    @classmethod
    def of(cls, state: FeedState, min_new: int, max_wait_hours: float,
           now: datetime | None = None) -> tuple[BufferStatus, list[BufferedItem]]:
        """The status of `state`'s buffer, and its waiting items."""
        items = state.items()
        through = state.published_through()
        pending = [item for item in items if item.seq > through]
        status = cls(len(pending), pending[0].fetched_at if pending else None, len(items),
                     min_new, max_wait_hours, now or datetime.now(timezone.utc))
        return status, pending

    @property
    def age_hours(self) -> float | None:
        """How long the oldest waiting item has waited, in hours."""
        if self.oldest is None:
            return None
        return max(0.0, (self.now - self.oldest).total_seconds() / 3600)

    @property
    def deadline(self) -> datetime | None:
        """When the oldest waiting item will have waited `max_wait_hours`."""
        return None if self.oldest is None else self.oldest + timedelta(hours=self.max_wait_hours)

    @property
    def due(self) -> bool:
        """True when the buffer should become a dataset version now."""
        return self.waiting > 0 and (self.waiting >= self.min_new
                                     or self.age_hours >= self.max_wait_hours)

    def reason(self) -> str:
        """Why it is due (or the empty string)."""
        if not self.due:
            return ""
        if self.waiting >= self.min_new:
            return f"{self.waiting} items waiting (min_new {self.min_new})"
        return (f"oldest item waited {self.age_hours:.1f} h "
                f"(max_wait_hours {self.max_wait_hours:g})")

    def next_publish(self) -> str:
        """The condition that will publish the buffer next."""
        if not self.waiting:
            return (f"once {self.min_new} items wait, or {self.max_wait_hours:g} h after the "
                    "next item arrives")
        if self.due:
            return "now: " + self.reason()
        left_h = (self.deadline - self.now).total_seconds() / 3600
        return (f"at {self.min_new} items ({self.min_new - self.waiting} more), or at "
                f"{self.deadline.isoformat(timespec='seconds')} (in {left_h:.1f} h)")

    def describe(self) -> str:
        age = f", oldest {self.age_hours:.1f} h old" if self.waiting else ""
        return (f"{self.waiting} item(s) waiting{age}; {self.stored} stored in all; "
                f"publishes {self.next_publish()}")

    def row(self) -> dict[str, Any]:
        """One row of the dashboard's buffer table."""
        return {"items waiting": self.waiting,
                "oldest item age (h)": (round(self.age_hours, 2) if self.waiting else "-"),
                "next publish": self.next_publish(), "items stored (all time)": self.stored,
                "checked at": self.now.isoformat(timespec="seconds")}


@task(name="poll-feed", cache_policy=NO_CACHE, retries=presets.FEED_RETRIES,
      retry_delay_seconds=exponential_backoff(presets.FEED_RETRY_DELAY_S),
      retry_condition_fn=retry_if_transient)
def poll_into_buffer(storage: str | None, url: str,
                     fetch: FetchConfig = FetchConfig()) -> PollCounts:
    """Poll `url` once (conditional GET) and append its new items to the buffer; the counts.
    Raises `FeedError` (one line naming the URL) when the feed cannot be fetched or read."""
    store = open_store(storage)
    state = store.feeds
    poll = poll_feed(url, Validators(*state.validators(url)), fetch)
    with state.locked():
        previous = latest_dataset(storage)
        previous_dir = store.path("datasets", previous) if previous else None
        new, counts = select_new(poll, state.items(), previous_dir)
        state.append(new)  # durable before the validators say "seen"
        sent = poll.fetch.validators
        state.save_validators(url, sent.etag, sent.last_modified)
    run_logger().info("%s: %s", url, counts.describe())
    return counts


def buffer_status(storage: str | None, min_new: int = presets.FEED_MIN_NEW,
                  max_wait_hours: float = presets.FEED_MAX_WAIT_HOURS,
                  now: datetime | None = None) -> BufferStatus:
    """What waits in the buffer and when it will be published."""
    check_batching(min_new, max_wait_hours)
    return BufferStatus.of(open_store(storage).feeds, min_new, max_wait_hours, now)[0]


@task(name="publish-buffer", cache_policy=NO_CACHE)
def publish_buffer(storage: str | None, min_new: int = presets.FEED_MIN_NEW,
                   max_wait_hours: float = presets.FEED_MAX_WAIT_HOURS,
                   now: datetime | None = None) -> str | None:
    """Publish the buffer's waiting items as a new dataset version when at least `min_new`
    wait or the oldest has waited `max_wait_hours`; the new version's id, else None.

    The version is the latest one plus the waiting items (texts it already holds dropped),
    planned by ingestion.plan like a CSV ingestion; its manifest records the last buffer item
    it holds (params["feed_buffer"]), then the buffer marks them published (storage.feeds:
    a kill at any point publishes each item once).
    """
    check_batching(min_new, max_wait_hours)
    store = open_store(storage)
    log = run_logger()
    with store.feeds.locked() as state:
        status, pending = BufferStatus.of(state, min_new, max_wait_hours, now)
        if not status.due:
            return None
        through = pending[-1].seq

        def build(previous_dir: Path | None) -> Publication | None:
            stored = stored_texts(previous_dir, (item.headline for item in pending))
            kept = [item for item in pending if item.headline not in stored]
            if not kept:
                return None
            sources: dict[str, int] = {}
            for item in kept:
                sources[item.source] = sources.get(item.source, 0) + 1
            return Publication(
                plan_rows(previous_dir, raw_rows(kept), FEED_CLEANING),
                params={"ingest": to_dict(FEED_CLEANING),
                        BUFFER_PARAM: {"first": pending[0].seq, "through": through},
                        "min_new": min_new, "max_wait_hours": max_wait_hours},
                summary={"feed": {"items": len(kept), "already_stored": len(pending) - len(kept),
                                  "undated": sum(not item.dated for item in kept),
                                  "sources": sources, "trigger": status.reason()}})

        dataset_id, previous, plan = publish_on_latest(store, build)
        state.mark_published(through, dataset_id or previous or "")
    if dataset_id is None:
        log.info("the %d waiting item(s) are already in dataset %s: nothing to publish",
                 len(pending), previous)
        return None
    log.info("published dataset %s from the feed buffer (%s): %s", dataset_id,
             status.reason(), plan.describe())
    return dataset_id


@dataclass(frozen=True)
class FeedResult:
    """One feed's poll: its counts, or the one-line error that stopped it."""

    url: str
    counts: PollCounts | None
    error: str | None = None  # what stopped it (storage.cause), the URL being `url`

    def row(self) -> dict[str, Any]:
        """One row of the dashboard's per-feed table."""
        counts = (self.counts or PollCounts()).as_dict()
        keys = ("fetched", "new", "duplicates", "rejected", "undated", "not_modified")
        return {"feed": self.url, **{k.replace("_", " "): counts[k] for k in keys},
                "error": self.error or ""}


@dataclass
class FeedRun:
    """What one `ingest_feeds` run did (the flow's return value)."""

    feeds: list[FeedResult]
    dataset_id: str | None  # the version this run published, if any
    buffer: BufferStatus
    event_id: str | None = None  # the flow's charlm.dataset.published event
    errors: list[str] = field(default_factory=list)  # "<url>: <cause>" per failed feed

    def raise_for_errors(self) -> None:
        """RuntimeError listing every failed feed, if any did."""
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} of {len(self.feeds)} feed(s) failed: "
                               + "; ".join(self.errors))


def ingest_feeds(storage: str | None, urls: list[str], min_new: int = presets.FEED_MIN_NEW,
                 max_wait_hours: float = presets.FEED_MAX_WAIT_HOURS,
                 fetch: FetchConfig = FetchConfig(), drift: bool = True) -> FeedRun:
    """Poll every feed into the buffer, then publish the buffer if due (the operation).

    A feed that fails does not stop the others; its one-line error is logged and kept in
    `FeedRun.errors` (the caller decides whether the run failed: `raise_for_errors`).
    When a version is published and `drift` is set, the champion is scored on its new
    headlines (tasks.drift.record_drift, which never raises), as for CSV ingestion.
    """
    check_batching(min_new, max_wait_hours)
    if not urls:
        raise ValueError("no feed URLs given")
    log = run_logger()
    results = []
    for url in dict.fromkeys(urls):  # a URL given twice is polled once
        try:
            results.append(FeedResult(url, run_task(poll_into_buffer, storage, url, fetch)))
        except Exception as error:  # one bad feed never blocks the others
            # a FeedError's message already starts with its URL: keep only its problem
            problem = error.problem if isinstance(error, FeedError) else error
            results.append(FeedResult(url, None, cause(problem)))
            log.error("%s", one_line(url, problem))
    dataset_id = run_task(publish_buffer, storage, min_new, max_wait_hours)
    if dataset_id is not None and drift:
        from tasks.drift import record_drift  # TensorFlow only when there is a champion

        record_drift(storage, dataset_id)
    status = buffer_status(storage, min_new, max_wait_hours)
    log.info("feed buffer: %s", status.describe())
    return FeedRun(results, dataset_id, status,
                   errors=[f"{r.url}: {r.error}" for r in results if r.error is not None])
