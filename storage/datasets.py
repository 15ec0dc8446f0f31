"""The on-disk format of a dataset version: two Parquet files (names: storage.layout).

- `headlines.parquet`: every clean headline so far (previous versions' rows first, in their
  order, then the new rows), with the columns of `HEADLINES_SCHEMA`: publish_date (Date),
  headline (String), split (one of `SPLITS`), source (file name), row (1-based data row).
- `quarantine.parquet`: the rows the ingestion that made *this* version rejected (earlier
  rejections live in earlier versions), with `QUARANTINE_SCHEMA`: source, row, reason (why,
  see ingestion.reasons), raw (the rejected record's text).

`write_dataset` only writes into a directory it is given (a staging directory the caller
publishes atomically, see storage.Store); it never picks a path itself. What the rows mean
and how they are made is ingestion's business (the `ingestion` package).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from storage.layout import DatasetFiles

__all__ = ["FORMAT", "HEADLINES_SCHEMA", "QUARANTINE_SCHEMA", "RECENT", "RECENT_DAYS", "SPLITS",
           "check_split", "recent_days", "read_headlines", "read_quarantine", "read_texts",
           "read_view", "value_counts", "write_dataset"]

FORMAT = "charlm-headlines/1"  # bump when the files' columns or meaning change
SPLITS: tuple[str, ...] = ("train", "validation", "test")  # values of the `split` column
RECENT = "recent"  # the time-based view: "recent" or "recent:DAYS"
RECENT_DAYS = 30  # days of the recent view when DAYS is not given (about a month of news)
HEADLINES_SCHEMA: dict[str, pl.DataType] = {
    "publish_date": pl.Date(), "headline": pl.String(), "split": pl.String(),
    "source": pl.String(), "row": pl.Int64()}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(), "row": pl.Int64(), "reason": pl.String(), "raw": pl.String()}


def _conform(frame: pl.LazyFrame | pl.DataFrame, schema: dict[str, pl.DataType],
             what: str) -> pl.LazyFrame:
    """The frame with exactly `schema`'s columns, in order; ValueError if any is missing."""
    lf = frame.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in schema if c not in names]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}; has {names}")
    return lf.select(pl.col(c).cast(t) for c, t in schema.items())


def value_counts(frame: pl.DataFrame | pl.LazyFrame, column: str) -> dict[str, int]:
    """Rows per value of `column`, by value."""
    counts = frame.lazy().group_by(column).len().sort(column).collect()
    return dict(zip(counts[column].to_list(), map(int, counts["len"].to_list()), strict=True))


def write_dataset(directory: Path, headlines: pl.LazyFrame | pl.DataFrame,
                  quarantine: pl.LazyFrame | pl.DataFrame | None = None) -> dict[str, Any]:
    """Write a dataset version's files into an existing `directory`; return what they hold,
    JSON-able: format, rows, splits (rows per split, every split named), sources (clean rows
    per source file), quarantined_by_reason (rows per reason)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not an existing directory")
    if quarantine is None:
        quarantine = pl.DataFrame(schema=QUARANTINE_SCHEMA)
    heads = _conform(headlines, HEADLINES_SCHEMA, "headlines").collect()
    quar = _conform(quarantine, QUARANTINE_SCHEMA, "quarantine").collect()
    files = DatasetFiles.at(directory)
    # zstd: ~3x smaller than the CSV and still fast to scan.
    heads.write_parquet(files.headlines, compression="zstd")
    quar.write_parquet(files.quarantine, compression="zstd")
    splits = value_counts(heads, "split")
    return {"format": FORMAT, "rows": heads.height,
            "splits": {name: splits.get(name, 0) for name in SPLITS},
            "sources": value_counts(heads, "source"),
            "quarantined_by_reason": value_counts(quar, "reason")}


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent}: not a dataset version (no {path.name})")
    return path


def read_headlines(directory: Path) -> pl.LazyFrame:
    """A dataset version's clean headlines, lazily."""
    return pl.scan_parquet(_existing(DatasetFiles.at(directory).headlines))


def read_quarantine(directory: Path) -> pl.LazyFrame:
    """The rows the ingestion that produced this version rejected, lazily."""
    return pl.scan_parquet(_existing(DatasetFiles.at(directory).quarantine))


def recent_days(split: str | None) -> int | None:
    """DAYS of a "recent[:DAYS]" view (RECENT_DAYS when not given), None for other names;
    ValueError naming the value when DAYS is not a whole number >= 1."""
    if split is None or split.partition(":")[0] != RECENT:
        return None
    if split == RECENT:
        return RECENT_DAYS
    text = split.partition(":")[2]
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"bad split {split!r}: DAYS in recent:DAYS must be a whole number "
                         f">= 1, got {text!r}")
    return int(text)


def check_split(split: str | None) -> str | None:
    """`split` if it is one of SPLITS, "all", "recent[:DAYS]" or None; else ValueError."""
    if split is None or split == "all" or split in SPLITS or recent_days(split) is not None:
        return split
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}, 'all' "
                     f"or '{RECENT}[:DAYS]'")


def _newest(days: int) -> pl.Expr:
    """The rows of the newest `days` days of publish dates (whole days back from the newest
    date; a window longer than the calendar allows, recent:10000000, takes every row)."""
    span = min(days - 1, (date.max - date.min).days)
    return pl.col("publish_date") >= pl.col("publish_date").max() - pl.duration(days=span)


def _view(directory: Path, split: str | None, days: int | None = None) -> pl.LazyFrame:
    lf = read_headlines(directory)
    if days is not None:  # first: the window ends at the dataset's newest date
        lf = lf.filter(_newest(days))
    window = recent_days(check_split(split))
    if window is not None:
        return lf.filter(_newest(window))
    if split not in (None, "all"):
        return lf.filter(pl.col("split") == split)
    return lf


def read_view(directory: Path, split: str | None = None) -> pl.DataFrame:
    """The rows of one view (see the module docstring), in dataset order: columns
    publish_date, headline and split."""
    return _view(directory, split).select("publish_date", "headline", "split").collect()


def read_texts(directory: Path, split: str | None = None,
               days: int | None = None) -> list[str]:
    """Headline texts of one view: a split ("train", "validation", "test"), "recent[:DAYS]"
    or every row ("all"/None); with `days`, only the view's rows of the newest `days` days of
    publish dates (the recent view's window)."""
    return _view(directory, split, days).select("headline").collect()["headline"].to_list()
