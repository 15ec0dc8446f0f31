"""Turn raw headline rows into clean, split, de-duplicated training rows.

Pure logic on polars LazyFrames: no file I/O and no paths (storage/ reads the CSVs
and writes the dataset files). Everything here stays lazy so the caller can run
the whole ingestion as one `collect`.

The model's alphabet is ASCII 10..127 where newline (10) ends a headline, so a
clean headline holds only printable ASCII 32..126. Cleaning rules, identical in
`clean_text` (one string) and `clean` (vectorised):

1. non-ASCII text is transliterated with `anyascii` ("Café Zürich" -> "Cafe Zurich");
2. tab, newline, vertical tab, form feed and carriage return become spaces;
3. every other control character (NUL..US, DEL) is removed;
4. runs of spaces collapse to one space, and leading/trailing spaces are trimmed;
5. the text is lowercased only when `IngestConfig.lowercase` is set.

A row that cannot become a clean headline is quarantined with one of the exact
`REASONS` below, never silently dropped. The first four come from the CSV reader
(storage.sources) through the raw frame's `reason` column; the rest from `clean`,
checked in this order (the first that applies wins):

- "undecodable bytes": the row holds bytes that are not valid UTF-8;
- "NUL bytes": the row holds NUL (0x00) bytes, a sign of binary or UTF-16 data;
- "ragged row": the row has a different number of fields than the header;
- "bad quoting": text follows a closing quote, or a quoted field never closes;
- "bad date": `publish_date` (surrounding spaces ignored) is not a valid calendar
  date written as YYYYMMDD;
- "empty after cleaning": nothing is left of the headline after cleaning;
- "longer than max_length": the cleaned headline is longer than `max_length`.

Splits are a function of the cleaned text alone (a blake2b hash, see `bucket_of`),
so the same text always lands in the same split, in every process, polars version
and dataset version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from operator import methodcaller

import numpy as np
import polars as pl
from anyascii import anyascii

from charlm.config import SPLITS, IngestConfig

__all__ = [
    "CLEAN_SCHEMA",
    "KEY",
    "QUARANTINE_SCHEMA",
    "RAW_COLUMNS",
    "REASONS",
    "IngestError",
    "bucket_of",
    "clean",
    "clean_text",
    "merge",
    "merge_counts",
    "reason_counts",
    "split_counts",
    "split_of",
    "transliterator",
]


class IngestError(ValueError):
    """Input that cannot be ingested at all; the message is one line naming the file."""


# Reasons set by the CSV reader (storage.sources), then by `clean`, in precedence order.
UNDECODABLE = "undecodable bytes"
NUL_BYTES = "NUL bytes"
RAGGED = "ragged row"
BAD_QUOTING = "bad quoting"
BAD_DATE = "bad date"
EMPTY = "empty after cleaning"
TOO_LONG = "longer than max_length"
REASONS: tuple[str, ...] = (UNDECODABLE, NUL_BYTES, RAGGED, BAD_QUOTING, BAD_DATE, EMPTY, TOO_LONG)

# What storage.sources produces; `reason` and `raw` are optional (null = parsed fine).
RAW_COLUMNS: tuple[str, ...] = ("source", "row", "publish_date", "headline_text")
CLEAN_SCHEMA: dict[str, pl.DataType] = {
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
# Two rows are the same headline when both the date and the cleaned text match.
KEY: tuple[str, str] = ("publish_date", "headline")

# The same character classes in Python `re` and in polars (Rust regex) syntax.
_SPACE_LIKE = r"[\t\n\x0B\x0C\r]"
_CONTROL = r"[\x00-\x1F\x7F]"
_SPACES = r" {2,}"
_SPACE_LIKE_RE = re.compile(_SPACE_LIKE)
_CONTROL_RE = re.compile(_CONTROL)
_SPACES_RE = re.compile(_SPACES)


def transliterator() -> dict[str, str]:
    """Name and version of the transliteration library, recorded with each dataset."""
    try:
        ver = version("anyascii")
    except PackageNotFoundError:  # vendored or run from a source tree
        ver = "unknown"
    return {"name": "anyascii", "version": ver}


def clean_text(s: str, lowercase: bool = False) -> str:
    """Clean one headline by the module's rules; idempotent, output is printable ASCII."""
    if not s.isascii():
        s = anyascii(s)
    s = _SPACE_LIKE_RE.sub(" ", s)
    s = _CONTROL_RE.sub("", s)
    s = _SPACES_RE.sub(" ", s).strip(" ")
    return s.lower() if lowercase else s


def bucket_of(text: str) -> int:
    """Stable bucket 0..99 of a cleaned text: 8-byte blake2b of its UTF-8, big-endian, mod 100.

    blake2b (not polars' `hash`, which may change between versions) keeps the
    assignment identical across processes, machines and library versions.
    The same rule as benchmarks/common.py, so baselines score the same test rows.
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def _split_name(bucket: int, config: IngestConfig) -> str:
    if bucket < config.test_percent:
        return "test"
    if bucket < config.test_percent + config.validation_percent:
        return "validation"
    return "train"


def split_of(text: str, config: IngestConfig) -> str:
    """The split ("train", "validation" or "test") of an already-cleaned text."""
    return _split_name(bucket_of(text), config)


_DIRTY = [chr(i) for i in range(32)] + ["\x7f", "  "]  # what steps 2-4 would change


def _subset(s: pl.Series, mask: pl.Series, fix) -> pl.Series:
    """`s` with `fix` applied to the rows where `mask` is true, the rest untouched."""
    mask = mask.fill_null(False)
    if not mask.any():
        return s
    return s.clone().scatter(mask.arg_true(), fix(s.filter(mask)))


def _clean_batch(lowercase: bool):
    def transliterate(part: pl.Series) -> pl.Series:
        return pl.Series([anyascii(v) for v in part.to_list()], dtype=pl.String)

    def tidy(part: pl.Series) -> pl.Series:
        return (
            part.str.replace_all(_SPACE_LIKE, " ")
            .str.replace_all(_CONTROL, "")
            .str.replace_all(_SPACES, " ")
            .str.strip_chars(" ")
        )

    def compute(s: pl.Series) -> pl.Series:
        # Most headlines are clean ASCII: cheap tests pick out the few rows that need
        # anyascii (a Python call per row) or the regex rewrites, and only those are
        # touched. A string is ASCII exactly when its byte and char lengths agree.
        s = _subset(s, s.str.len_bytes() != s.str.len_chars(), transliterate)
        dirty = s.str.contains_any(_DIRTY) | s.str.starts_with(" ") | s.str.ends_with(" ")
        s = _subset(s, dirty, tidy)
        return s.str.to_lowercase() if lowercase else s

    return compute


def _split_batch(config: IngestConfig):
    names = np.array(["test", "validation", "train"], dtype=object)
    edges = np.array([config.test_percent, config.test_percent + config.validation_percent])
    digest = methodcaller("digest")
    blake2b = partial(hashlib.blake2b, digest_size=8)

    def compute(s: pl.Series) -> pl.Series:
        # `bucket_of` for a whole column: one C-level hashlib call per row (no Python
        # frame per row) and the modulo in numpy; ~0.6 us a row.
        digests = b"".join(map(digest, map(blake2b, s.cast(pl.Binary).to_list())))
        buckets = np.frombuffer(digests, dtype=">u8") % 100
        split = names[np.searchsorted(edges, buckets, side="right")]
        return pl.Series(s.name, split, dtype=pl.String)

    return compute


def _clean_expr(column: str, lowercase: bool) -> pl.Expr:
    """The vectorised twin of `clean_text`."""
    return pl.col(column).map_batches(
        _clean_batch(lowercase), return_dtype=pl.String, is_elementwise=True
    )


def _date_expr(column: str) -> pl.Expr:
    raw = pl.col(column).str.strip_chars()
    # The regex keeps strptime from accepting shorter years or signs; strptime then
    # rejects impossible days such as 20030230.
    return (
        pl.when(raw.str.contains(r"^[0-9]{8}$"))
        .then(raw.str.strptime(pl.Date, "%Y%m%d", strict=False))
        .otherwise(None)
    )


def clean(raw: pl.LazyFrame, config: IngestConfig) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Split raw rows into (clean rows, quarantined rows), both lazy.

    `raw` has string columns `publish_date` and `headline_text` plus `source` and
    `row`, and optionally `reason` (set by the reader for rows it could not parse)
    and `raw` (the record's raw text). Clean rows have the columns of
    `CLEAN_SCHEMA`; quarantined rows those of `QUARANTINE_SCHEMA`, where `raw` is
    the reader's raw record or, for cleaning reasons, "publish_date,headline_text".
    Within a frame, row order is kept.
    """
    names = raw.collect_schema().names()
    missing = [c for c in RAW_COLUMNS if c not in names]
    if missing:
        raise IngestError(f"raw frame lacks column(s) {', '.join(missing)}; found {names}")
    if "reason" not in names:
        raw = raw.with_columns(reason=pl.lit(None, dtype=pl.String))
    if "raw" not in names:
        raw = raw.with_columns(raw=pl.lit(None, dtype=pl.String))

    headline = pl.col("headline")
    staged = raw.select(
        pl.col("source").cast(pl.String),
        pl.col("row").cast(pl.Int64),
        _date_expr("publish_date").alias("publish_date"),
        _clean_expr("headline_text", config.lowercase).alias("headline"),
        pl.col("reason").cast(pl.String),
        pl.col("raw").cast(pl.String),
        # the raw fields, kept to build `raw` for the (few) quarantined rows only
        pl.col("publish_date").cast(pl.String).alias("_date_text"),
        pl.col("headline_text").cast(pl.String).alias("_headline_text"),
    ).with_columns(
        reason=pl.coalesce(
            pl.col("reason"),
            pl.when(pl.col("publish_date").is_null()).then(pl.lit(BAD_DATE))
            .when(headline.is_null() | (headline == "")).then(pl.lit(EMPTY))
            .when(headline.str.len_bytes() > config.max_length).then(pl.lit(TOO_LONG))
            .otherwise(None),
        )
    ).cache()  # good and bad rows share one pass (UDFs included) when collected together
    good = staged.filter(pl.col("reason").is_null()).select(
        "publish_date",
        "headline",
        headline.map_batches(_split_batch(config), return_dtype=pl.String, is_elementwise=True)
        .alias("split"),
        "source",
        "row",
    )
    bad = staged.filter(pl.col("reason").is_not_null()).select(
        "source",
        "row",
        "reason",
        pl.coalesce(
            "raw",
            pl.concat_str(
                pl.col("_date_text").fill_null(""), pl.col("_headline_text").fill_null(""),
                separator=",",
            ),
        ).alias("raw"),
    )
    return good, bad


def merge(previous: pl.LazyFrame | None, new: pl.LazyFrame) -> pl.LazyFrame:
    """De-duplicated union of a previous dataset's rows and newly cleaned rows.

    Rows are the same when `publish_date` and `headline` both match (`KEY`); the
    first occurrence wins, previous rows first, so row order is stable from version
    to version. A new row whose text already exists in `previous` takes that
    text's split there, so a text never straddles two splits even if the split
    percentages changed between versions.
    """
    columns = list(CLEAN_SCHEMA)
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


def split_counts(headlines: pl.DataFrame | pl.LazyFrame) -> dict[str, int]:
    """Rows per split, every split named even when empty."""
    frame = headlines.lazy().group_by("split").len().collect()
    counts = dict(zip(frame["split"].to_list(), frame["len"].to_list(), strict=True))
    return {name: int(counts.get(name, 0)) for name in SPLITS}


def reason_counts(quarantine: pl.DataFrame | pl.LazyFrame,
                  reasons: Sequence[str] = REASONS) -> dict[str, int]:
    """Quarantined rows per reason, in `REASONS` order, reasons with no rows left out."""
    frame = quarantine.lazy().group_by("reason").len().collect()
    counts = dict(zip(frame["reason"].to_list(), frame["len"].to_list(), strict=True))
    ordered = [r for r in reasons if r in counts] + sorted(set(counts) - set(reasons))
    return {r: int(counts[r]) for r in ordered}
