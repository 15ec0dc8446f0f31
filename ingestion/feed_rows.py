"""Feed items -> buffer items -> dataset rows: which items are new, and in which style.

`select_new` decides what one poll adds to the buffer (storage.feeds), `stored_texts` which
texts a dataset version already holds, and `raw_rows` turns buffer items into the raw rows
(`cleaning.RAW_SCHEMA`) that ingestion.plan merges onto the previous version, exactly as
CSV rows are.

Rules for one parsed feed (`select_new`):

- a title becomes its headline by the CSV cleaning rules with `FEED_CLEANING`, i.e. always
  normalised to the training data's style (ingestion/style.py: ``PM's $1.5b plan 'on
  track'`` -> ``pms 15b plan on track``);
- rejected, counted by reason: no title (ingestion.feeds), nothing left after
  normalisation, longer than ``max_headline_length`` (ingestion.reasons);
- a duplicate, counted: an item whose guid or link is already in the buffer (every item
  ever accepted stays there), whose headline is already in the buffer or in the latest
  dataset version (compared in the style, so ``Flood Warning`` repeats ``flood warning``),
  or that repeats an earlier item of the same poll. Texts are compared regardless of date:
  a story re-dated by its feed is still the same story;
- the rest are new; ``publish_date`` is the item's date in Australia/Sydney, or the fetch
  date for an item without one (``dated`` false, counted as ``undated``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from charlm.config import IngestConfig
from ingestion.cleaning import RAW_SCHEMA, clean_text
from ingestion.feeds import FeedPoll, sydney_date
from ingestion.reasons import EMPTY, TOO_LONG
from ingestion.style import IN_STYLE, normalise_expr
from storage.datasets import read_headlines
from storage.feeds import BufferedItem

__all__ = ["FEED_CLEANING", "Known", "PollCounts", "raw_rows", "select_new", "stored_texts"]

# Feed titles always join a dataset in the training data's style.
FEED_CLEANING = IngestConfig(normalise=True)


@dataclass
class Known:
    """What is already stored: guids, links and headlines (in the style) of the buffer,
    plus the texts a dataset version holds."""

    guids: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)
    texts: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, items: Iterable[BufferedItem]) -> Known:
        known = cls()
        for item in items:
            known.add(item)
        return known

    def add(self, item: BufferedItem) -> None:
        self.guids.add(item.guid)
        if item.link:
            self.links.add(item.link)
        self.texts.add(item.headline)

    def holds(self, item: BufferedItem) -> bool:
        return (item.guid in self.guids or bool(item.link and item.link in self.links)
                or item.headline in self.texts)


@dataclass(frozen=True)
class PollCounts:
    """What one poll of one feed did, for logs and the dashboard."""

    fetched: int = 0  # entries in the document
    new: int = 0  # items added to the buffer
    duplicates: int = 0  # already stored, or repeated within the document
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> entries
    undated: int = 0  # new items without a date (given the fetch date)
    not_modified: int = 0  # 1 when the server answered 304

    def as_dict(self) -> dict[str, int]:
        """Flat counts: fetched, new, duplicates, rejected, undated, not_modified, and
        ``rejected: <reason>`` per reason."""
        flat = {"fetched": self.fetched, "new": self.new, "duplicates": self.duplicates,
                "rejected": sum(self.rejected.values()), "undated": self.undated,
                "not_modified": self.not_modified}
        flat.update({f"rejected: {r}": n for r, n in self.rejected.items()})
        return flat

    def describe(self) -> str:
        if self.not_modified:
            return "not modified (304)"
        reasons = ", ".join(f"{r}: {n}" for r, n in self.rejected.items())
        return (f"fetched {self.fetched}, new {self.new}, duplicates {self.duplicates}, "
                f"rejected {sum(self.rejected.values())}" + (f" ({reasons})" if reasons else "")
                + f", undated {self.undated}")


def stored_texts(dataset_dir: Path | None, candidates: Iterable[str]) -> set[str]:
    """The `candidates` (texts in the style) that dataset version `dataset_dir` holds, its
    headlines compared in the style. Only rows not already in the style are normalised."""
    wanted = pl.Series(sorted(set(candidates)), dtype=pl.String)
    if dataset_dir is None or wanted.is_empty():
        return set()
    headline = pl.col("headline")
    heads = read_headlines(dataset_dir).select(headline)
    as_is = heads.filter(headline.is_in(wanted))
    restyled = (heads.filter(~headline.str.contains(IN_STYLE))
                .select(normalise_expr(headline).alias("headline"))
                .filter(headline.is_in(wanted)))
    found = pl.concat([as_is, restyled]).unique().collect()
    return set(found["headline"].to_list())


def select_new(poll: FeedPoll, buffered: Sequence[BufferedItem], dataset_dir: Path | None,
               config: IngestConfig = FEED_CLEANING) -> tuple[list[BufferedItem], PollCounts]:
    """The items of `poll` that are new against the buffer (`buffered`: every item in it)
    and dataset version `dataset_dir` (the latest; None when there is none), and the counts.
    The new items have no `seq` yet (storage.feeds numbers them)."""
    if poll.feed is None:
        return [], PollCounts(not_modified=1)
    fetched_at = poll.fetch.fetched_at
    rejected = dict(poll.feed.rejected)
    candidates = []
    for entry in poll.items:
        headline = clean_text(entry.title, config.lowercase, config.normalise)
        reason = (EMPTY if not headline
                  else TOO_LONG if len(headline) > config.max_headline_length else None)
        if reason:
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        candidates.append(BufferedItem(
            guid=entry.guid, link=entry.link, title=entry.title, headline=headline,
            publish_date=entry.published or sydney_date(fetched_at),
            dated=entry.published is not None, source=poll.url, fetched_at=fetched_at))
    known = Known.of(buffered)
    known.texts |= stored_texts(dataset_dir, (c.headline for c in candidates))
    new = []
    for item in candidates:
        if not known.holds(item):
            new.append(item)
            known.add(item)  # a repeat later in this document is a duplicate
    counts = PollCounts(
        fetched=poll.feed.entries, new=len(new),
        duplicates=poll.feed.duplicates + len(candidates) - len(new),
        rejected=rejected, undated=sum(not item.dated for item in new))
    return new, counts


def raw_rows(items: Sequence[BufferedItem]) -> pl.LazyFrame:
    """Buffer items as raw rows (`cleaning.RAW_SCHEMA`): source = the feed URL, row = the
    item's `seq` in the buffer, headline_text = its headline (already in the style)."""
    return pl.LazyFrame(
        {
            "source": [item.source for item in items],
            "row": [item.seq for item in items],
            "publish_date": [item.publish_date.strftime("%Y%m%d") for item in items],
            "headline_text": [item.headline for item in items],
            "reason": [None] * len(items),
            "raw": [None] * len(items),
        },
        schema=RAW_SCHEMA,
    )
