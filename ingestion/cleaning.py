"""The cleaning rules: raw headline rows in, (clean rows, quarantined rows) out.

Pure logic on polars LazyFrames: no file I/O and no paths (a source reader such as
ingestion.csv_reader produces the raw rows; storage.datasets writes the dataset files).
Everything here stays lazy so the caller can run the whole ingestion as one `collect`.

The model's alphabet is ASCII 10..127 where newline (10) ends a headline, so a
clean headline holds only printable ASCII 32..126. Cleaning rules, identical in
`clean_text` (one string) and `clean` (vectorised):

1. non-ASCII text is transliterated with `anyascii` ("Café Zürich" -> "Cafe Zurich");
2. tab, newline, vertical tab, form feed and carriage return become spaces;
3. every other control character (NUL..US, DEL) is removed;
4. runs of spaces collapse to one space, and leading/trailing spaces are trimmed;
5. the text is lowercased only when `IngestConfig.lowercase` is set;
6. when `IngestConfig.normalise` is set, the text is mapped to the training data's style by
   ingestion.style.normalise (lowercase a-z, digits, single spaces: ``PM's $1.5b plan`` ->
   ``pms 15b plan``); a headline left empty by it is quarantined as empty.

A row that cannot become a clean headline is quarantined with a reason (see
ingestion.reasons); clean rows get their split from ingestion.split.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

import polars as pl
from anyascii import anyascii

from charlm.config import IngestConfig
from ingestion import style
from ingestion.reasons import BAD_DATE, EMPTY, TOO_LONG, IngestError
from ingestion.split import split_expr

__all__ = ["RAW_SCHEMA", "REQUIRED_RAW_COLUMNS", "clean", "clean_text", "transliterator"]

# What a source reader produces, one row per source record. `reason` is null when the row
# parsed fine; `raw` holds the record's raw text for rows with a reason.
RAW_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "row": pl.Int64(),
    "publish_date": pl.String(),
    "headline_text": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
}
# The columns `clean` needs; `reason` and `raw` are optional.
REQUIRED_RAW_COLUMNS: tuple[str, ...] = ("source", "row", "publish_date", "headline_text")

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


def clean_text(s: str, lowercase: bool = False, normalise: bool = False) -> str:
    """Clean one headline by the module's rules; idempotent, output is printable ASCII."""
    if not s.isascii():
        s = anyascii(s)
    s = _SPACE_LIKE_RE.sub(" ", s)
    s = _CONTROL_RE.sub("", s)
    s = _SPACES_RE.sub(" ", s).strip(" ")
    s = s.lower() if lowercase else s
    return style.normalise(s) if normalise else s


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


def _clean_expr(column: str, config: IngestConfig) -> pl.Expr:
    """The vectorised twin of `clean_text`."""
    expr = pl.col(column).map_batches(
        _clean_batch(config.lowercase), return_dtype=pl.String, is_elementwise=True
    )
    return style.normalise_expr(expr) if config.normalise else expr


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
    storage.datasets.HEADLINES_SCHEMA (`split` from ingestion.split); quarantined rows
    those of QUARANTINE_SCHEMA, where `raw` is the reader's raw record or, for
    cleaning reasons, "publish_date,headline_text".
    Within a frame, row order is kept.
    """
    names = raw.collect_schema().names()
    missing = [c for c in REQUIRED_RAW_COLUMNS if c not in names]
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
        _clean_expr("headline_text", config).alias("headline"),
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
            .when(headline.str.len_bytes() > config.max_headline_length).then(pl.lit(TOO_LONG))
            .otherwise(None),
        )
    ).cache()  # good and bad rows share one pass (UDFs included) when collected together
    good = staged.filter(pl.col("reason").is_null()).select(
        "publish_date",
        "headline",
        split_expr("headline", config).alias("split"),
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


