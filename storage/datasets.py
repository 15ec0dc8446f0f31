"""The on-disk format of a dataset version, and the ingestion that computes one.

A dataset version is a directory holding two Parquet files:

- `headlines.parquet`: every clean headline so far (previous versions' rows first,
  in their order, then this ingestion's new rows), with the columns of
  charlm.ingest.CLEAN_SCHEMA: publish_date (Date), headline (String), split
  ("train" | "validation" | "test"), source (file name), row (1-based data row).
- `quarantine.parquet`: the rows *this* ingestion rejected (earlier rejections
  live in earlier versions), with charlm.ingest.QUARANTINE_SCHEMA: source, row,
  reason (one of charlm.ingest.REASONS), raw.

`write_dataset` only writes into a directory it is given (a staging directory the
caller publishes atomically, see storage.Store); it never picks a path itself.
`ingest_files` computes everything for a new version with one polars collect and
writes nothing, so the caller decides whether there is anything to publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from charlm.config import SPLITS, IngestConfig
from charlm.ingest import (
    CLEAN_SCHEMA,
    QUARANTINE_SCHEMA,
    IngestError,
    clean,
    merge,
    merge_counts,
    reason_counts,
    split_counts,
    transliterator,
)
from storage.sources import scan_headlines

__all__ = [
    "FORMAT",
    "HEADLINES_FILE",
    "QUARANTINE_FILE",
    "IngestPlan",
    "ingest_files",
    "read_headlines",
    "read_quarantine",
    "read_texts",
    "write_dataset",
]

HEADLINES_FILE = "headlines.parquet"
QUARANTINE_FILE = "quarantine.parquet"
FORMAT = "charlm-headlines/1"  # bump when the files' columns or meaning change


def _conform(frame: pl.LazyFrame | pl.DataFrame, schema: dict[str, pl.DataType],
             what: str) -> pl.LazyFrame:
    """The frame with exactly `schema`'s columns, in order; ValueError if any is missing."""
    lf = frame.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in schema if c not in names]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}; has {names}")
    return lf.select(pl.col(c).cast(t) for c, t in schema.items())


def write_dataset(
    directory: Path,
    headlines: pl.LazyFrame | pl.DataFrame,
    quarantine: pl.LazyFrame | pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Write a dataset version's files into an existing `directory`; return its summary.

    The summary is JSON-able: format, rows, splits (rows per split), quarantined
    (rows per reason), sources (clean rows per source file) and transliterator.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not an existing directory")
    if quarantine is None:
        quarantine = pl.DataFrame(schema=QUARANTINE_SCHEMA)
    heads = _conform(headlines, CLEAN_SCHEMA, "headlines").collect()
    quar = _conform(quarantine, QUARANTINE_SCHEMA, "quarantine").collect()
    # zstd: ~3x smaller than the CSV and still fast to scan.
    heads.write_parquet(directory / HEADLINES_FILE, compression="zstd")
    quar.write_parquet(directory / QUARANTINE_FILE, compression="zstd")
    return summarize(heads, quar)


def summarize(headlines: pl.DataFrame, quarantine: pl.DataFrame) -> dict[str, Any]:
    """The summary `write_dataset` returns, from collected frames."""
    sources = headlines.group_by("source").len().sort("source")
    return {
        "format": FORMAT,
        "rows": headlines.height,
        "splits": split_counts(headlines),
        "quarantined": reason_counts(quarantine),
        "sources": dict(zip(sources["source"].to_list(), sources["len"].to_list(), strict=True)),
        "transliterator": transliterator(),
    }


def _file(directory: Path, name: str) -> Path:
    path = Path(directory) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a dataset version (no {name})")
    return path


def read_headlines(directory: Path) -> pl.LazyFrame:
    """A dataset version's clean headlines, lazily."""
    return pl.scan_parquet(_file(directory, HEADLINES_FILE))


def read_quarantine(directory: Path) -> pl.LazyFrame:
    """The rows the ingestion that produced this version rejected, lazily."""
    return pl.scan_parquet(_file(directory, QUARANTINE_FILE))


def read_texts(directory: Path, split: str | None = None) -> list[str]:
    """Headline texts of one split ("train", "validation", "test") or all ("all"/None)."""
    lf = read_headlines(directory)
    if split is not None and split != "all":
        if split not in SPLITS:
            choices = ", ".join(SPLITS)
            raise ValueError(f"unknown split {split!r}; expected one of {choices} or 'all'")
        lf = lf.filter(pl.col("split") == split)
    return lf.select("headline").collect()["headline"].to_list()


@dataclass(frozen=True)
class IngestPlan:
    """Everything a new dataset version needs, computed but not yet written."""

    headlines: pl.DataFrame  # the whole new version: previous rows, then new ones
    quarantine: pl.DataFrame  # rows rejected by this ingestion
    new_rows: int  # rows added to the previous version
    duplicates: int  # clean rows dropped as already present (or repeated in the input)
    quarantined: dict[str, int]  # rows per reason
    sources: list[str] = field(default_factory=list)  # file names ingested

    @property
    def rows(self) -> int:
        """Rows in the whole new version."""
        return self.headlines.height

    total_rows = rows

    @property
    def changed(self) -> bool:
        """True when there is something to publish."""
        return self.new_rows > 0

    def describe(self) -> str:
        """One line for logs: "N new rows, M duplicates, Q quarantined (...)"."""
        q = sum(self.quarantined.values())
        detail = ", ".join(f"{k}: {v}" for k, v in self.quarantined.items())
        return (
            f"{self.new_rows} new rows, {self.duplicates} duplicates, {q} quarantined"
            + (f" ({detail})" if detail else "")
            + f"; {self.rows} rows in total"
        )


def ingest_files(
    previous_dir: Path | None, paths: Sequence[Path | str], config: IngestConfig
) -> IngestPlan:
    """Scan, clean and merge CSVs onto the previous version, in one collect.

    Raises IngestError for a file that cannot be read at all (the message names it)
    and FileNotFoundError if `previous_dir` is not a dataset version.
    """
    if not paths:
        raise IngestError("no CSV files given to ingest")
    raw = pl.concat([scan_headlines(p) for p in paths])
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
        quarantined=reason_counts(quar),
        sources=[Path(p).name for p in paths],
    )
