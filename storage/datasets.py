"""The on-disk format of a dataset version: two Parquet files (names: storage.layout).

- `headlines.parquet`: every clean headline so far (previous versions' rows first,
  in their order, then the new rows), with the columns of `HEADLINES_SCHEMA`:
  publish_date (Date), headline (String), split (one of `SPLITS`), source (file
  name), row (1-based data row in its source).
- `quarantine.parquet`: the rows the ingestion that made *this* version rejected
  (earlier rejections live in earlier versions), with `QUARANTINE_SCHEMA`: source,
  row, reason (why, see ingestion.reasons), raw (the rejected record's text).

`write_dataset` only writes into a directory it is given (a staging directory the
caller publishes atomically, see storage.Store); it never picks a path itself. What
the rows mean and how they are made is ingestion's business (the `ingestion` package).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from storage.layout import DatasetFiles

__all__ = [
    "FORMAT",
    "HEADLINES_SCHEMA",
    "QUARANTINE_SCHEMA",
    "SPLITS",
    "check_split",
    "read_headlines",
    "read_quarantine",
    "read_texts",
    "value_counts",
    "write_dataset",
]

FORMAT = "charlm-headlines/1"  # bump when the files' columns or meaning change
SPLITS: tuple[str, ...] = ("train", "validation", "test")  # values of the `split` column
HEADLINES_SCHEMA: dict[str, pl.DataType] = {
    "publish_date": pl.Date(),
    "headline": pl.String(),
    "split": pl.String(),
    "source": pl.String(),
    "row": pl.Int64(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "row": pl.Int64(),
    "reason": pl.String(),
    "raw": pl.String(),
}


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


def write_dataset(
    directory: Path,
    headlines: pl.LazyFrame | pl.DataFrame,
    quarantine: pl.LazyFrame | pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Write a dataset version's files into an existing `directory`; return what they hold.

    The summary is JSON-able: format, rows, splits (rows per split, every split named),
    sources (clean rows per source file), quarantined_by_reason (rows per reason).
    """
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
    return {
        "format": FORMAT,
        "rows": heads.height,
        "splits": {name: splits.get(name, 0) for name in SPLITS},
        "sources": value_counts(heads, "source"),
        "quarantined_by_reason": value_counts(quar, "reason"),
    }


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


def check_split(split: str | None) -> str | None:
    """`split` if it is one of SPLITS, "all" or None; else ValueError naming it."""
    if split is not None and split != "all" and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)} "
                         "or 'all'")
    return split


def read_texts(directory: Path, split: str | None = None) -> list[str]:
    """Headline texts of one split ("train", "validation", "test") or all ("all"/None)."""
    lf = read_headlines(directory)
    if check_split(split) not in (None, "all"):
        lf = lf.filter(pl.col("split") == split)
    return lf.select("headline").collect()["headline"].to_list()
