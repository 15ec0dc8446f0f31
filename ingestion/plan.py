"""Planning a dataset version: read, clean and merge new rows onto the previous version.

`plan_rows` computes everything for a new version from raw rows of any source
(`cleaning.RAW_SCHEMA`: CSV files via `plan_ingest`, feed items via ingestion.feed_rows) with
one polars collect and writes nothing, so the caller decides whether there is anything to
publish; `write_version` then writes the plan into a (staging) directory in storage's
dataset format. With no previous version, a plan is simply the files' clean, de-duplicated
rows and their quarantine: how `charlm evaluate --csv` reads files it does not ingest.
`added_rows` is the inverse of `merge`: the rows a version added to its predecessor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from charlm.config import IngestConfig
from ingestion.cleaning import clean, transliterator
from ingestion.csv_reader import scan_headlines
from ingestion.reasons import IngestError, in_reason_order
from storage.datasets import HEADLINES_SCHEMA, read_headlines, value_counts, write_dataset

__all__ = ["KEY", "IngestPlan", "added_rows", "merge", "merge_counts", "plan_ingest",
           "plan_rows", "write_version"]

# Two rows are the same headline when both the date and the cleaned text match.
KEY: tuple[str, str] = ("publish_date", "headline")

def merge(previous: pl.LazyFrame | None, new: pl.LazyFrame) -> pl.LazyFrame:
    """De-duplicated union of a previous dataset's rows and newly cleaned rows.

    Rows are the same when `publish_date` and `headline` both match (`KEY`); the
    first occurrence wins, previous rows first, so row order is stable from version
    to version. A new row whose text already exists in `previous` takes that
    text's split there, so a text never straddles two splits even if the split
    percentages changed between versions.
    """
    columns = list(HEADLINES_SCHEMA)
    if previous is None:
        return new.select(columns).unique(subset=list(KEY), keep="first", maintain_order=True)
    previous = previous.select(columns)
    known = previous.select("headline", pl.col("split").alias("_known_split")).unique(
        subset=["headline"], keep="first", maintain_order=True
    )
    new = (
        new.select(columns)
        .join(known, on="headline", how="left", maintain_order="left")
        .with_columns(split=pl.coalesce("_known_split", "split"))
        .select(columns)
    )
    return pl.concat([previous, new]).unique(subset=list(KEY), keep="first", maintain_order=True)


def added_rows(previous: pl.LazyFrame | None, current: pl.LazyFrame) -> pl.LazyFrame:
    """The rows of `current` whose `KEY` is not in `previous` (all of them when None), in
    `current`'s order: what `merge` added when it made `current` from `previous`."""
    if previous is None:
        return current
    return current.join(previous.select(KEY).unique(), on=list(KEY), how="anti",
                        maintain_order="left")


def merge_counts(
    previous: pl.LazyFrame | None, new: pl.LazyFrame, merged: pl.LazyFrame | None = None
) -> pl.LazyFrame:
    """One row: `new_rows` (rows `merge` adds) and `duplicates` (rows of `new` it drops).

    `new_rows + duplicates == len(new)`; duplicates are rows already in `previous`
    or repeated within `new`. Lazy, so it shares one `collect_all` with the merge;
    pass the (`.cache()`d) result of `merge(previous, new)` as `merged` to reuse it.
    """
    if merged is None:
        merged = merge(previous, new)
    before = (
        previous.select(pl.len().alias("before"))
        if previous is not None
        else pl.LazyFrame({"before": [0]}, schema={"before": pl.UInt32})
    )
    added = pl.col("merged").cast(pl.Int64) - pl.col("before").cast(pl.Int64)
    return pl.concat(
        [merged.select(pl.len().alias("merged")), before, new.select(pl.len().alias("incoming"))],
        how="horizontal",
    ).select(new_rows=added, duplicates=pl.col("incoming").cast(pl.Int64) - added)


@dataclass(frozen=True)
class IngestPlan:
    """Everything a new dataset version needs, computed but not yet written."""

    headlines: pl.DataFrame  # the whole new version: previous rows, then new ones
    quarantine: pl.DataFrame  # rows rejected by this ingestion
    new_rows: int  # rows added to the previous version
    duplicates: int  # clean rows dropped as already present (or repeated in the input)
    quarantined_by_reason: dict[str, int]  # rows rejected, per reason, in REASONS order

    @property
    def rows(self) -> int:
        """Rows in the whole new version."""
        return self.headlines.height

    @property
    def quarantined_rows(self) -> int:
        return sum(self.quarantined_by_reason.values())

    @property
    def changed(self) -> bool:
        """True when there is something to publish."""
        return self.new_rows > 0

    def describe(self) -> str:
        """One line for logs: "N new rows, M duplicates, Q quarantined (...); R rows in total"."""
        detail = ", ".join(f"{k}: {v}" for k, v in self.quarantined_by_reason.items())
        return (
            f"{self.new_rows} new rows, {self.duplicates} duplicates, "
            f"{self.quarantined_rows} quarantined" + (f" ({detail})" if detail else "")
            + f"; {self.rows} rows in total"
        )


def plan_ingest(
    previous_dir: Path | None, paths: Sequence[Path | str], config: IngestConfig
) -> IngestPlan:
    """Scan, clean and merge CSVs onto the previous version, in one collect.

    Raises IngestError for a file that cannot be read at all (the message names it)
    and FileNotFoundError if `previous_dir` is not a dataset version.
    """
    if not paths:
        raise IngestError("no CSV files given to ingest")
    return plan_rows(previous_dir, pl.concat([scan_headlines(p) for p in paths]), config)


def plan_rows(previous_dir: Path | None, raw: pl.LazyFrame, config: IngestConfig) -> IngestPlan:
    """Clean raw rows (`cleaning.RAW_SCHEMA`) and merge them onto the previous version, in
    one collect. Raises FileNotFoundError if `previous_dir` is not a dataset version."""
    new, quarantine = clean(raw, config)
    previous = read_headlines(previous_dir) if previous_dir is not None else None
    merged = merge(previous, new).cache()  # the counts reuse it rather than merge again
    # One collect_all; clean() caches its shared sub-plan, so each UDF runs once.
    heads, quar, counts = pl.collect_all(
        [merged, quarantine, merge_counts(previous, new, merged)]
    )
    return IngestPlan(
        headlines=heads,
        quarantine=quar,
        new_rows=int(counts["new_rows"][0]),
        duplicates=int(counts["duplicates"][0]),
        quarantined_by_reason=in_reason_order(value_counts(quar, "reason")),
    )


def write_version(plan: IngestPlan, directory: Path) -> dict[str, Any]:
    """Write `plan` as a dataset version into `directory`; return the version's summary:
    storage's description of the files plus this ingestion's counts and transliterator."""
    summary = write_dataset(directory, plan.headlines, plan.quarantine)
    summary.update(new_rows=plan.new_rows, duplicates=plan.duplicates,
                   quarantined_by_reason=plan.quarantined_by_reason,
                   transliterator=transliterator())
    return summary
