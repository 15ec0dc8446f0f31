"""Cleaning, quarantine, hash splits and merging of headline rows (pure polars, no files)."""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.config import IngestConfig
from ingestion.cleaning import clean, clean_text, transliterator
from ingestion.plan import merge, merge_counts
from ingestion.reasons import REASONS, IngestError
from ingestion.split import hash_percentile, split_of
from storage.datasets import HEADLINES_SCHEMA, QUARANTINE_SCHEMA

CONFIG = IngestConfig()
PRINTABLE = re.compile(r"[ -~]*")  # ASCII 32..126


def raw_frame(pairs: list[tuple[str | None, str | None]], **extra: list) -> pl.LazyFrame:
    data = {
        "source": ["t.csv"] * len(pairs),
        "row": list(range(1, len(pairs) + 1)),
        "publish_date": [d for d, _ in pairs],
        "headline_text": [h for _, h in pairs],
        **extra,
    }
    return pl.LazyFrame(data, schema_overrides={"publish_date": pl.String,
                                                "headline_text": pl.String})


def run(pairs, config: IngestConfig = CONFIG, **extra) -> tuple[pl.DataFrame, pl.DataFrame]:
    good, bad = clean(raw_frame(pairs, **extra), config)
    return good.collect(), bad.collect()


# -- clean_text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Café Zürich", "Cafe Zurich"),
        ("北京欢迎你", "BeiJingHuanYingNi"),  # only non-ASCII: transliterated, not dropped
        ("  a\t\tb\r\nc  ", "a b c"),
        ("a\x00b\x7fc\x1bd", "abcd"),
        ("\u201csmart\u201d \u2013 quotes", '"smart" - quotes'),
        ("non\u00a0breaking", "non breaking"),
        ("\u200b\u200b", ""),
        ("Keep CASE", "Keep CASE"),
    ],
)
def test_clean_text(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def test_clean_text_lowercase() -> None:
    assert clean_text("Ça VA", lowercase=True) == "ca va"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.booleans())
def test_clean_text_idempotent_and_printable(text: str, lowercase: bool) -> None:
    once = clean_text(text, lowercase)
    assert PRINTABLE.fullmatch(once)
    assert once == once.strip(" ") and "  " not in once
    assert clean_text(once, lowercase) == once


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1), min_size=1, max_size=20), st.booleans())
def test_vectorised_clean_matches_clean_text(texts: list[str], lowercase: bool) -> None:
    config = IngestConfig(lowercase=lowercase, max_headline_length=10_000)
    good, bad = run([("20030219", t) for t in texts], config)
    expected = [clean_text(t, lowercase) for t in texts]
    assert good["headline"].to_list() == [e for e in expected if e]
    assert bad["reason"].to_list() == ["empty after cleaning"] * expected.count("")


def test_normalise_option_maps_headlines_to_the_abc_style() -> None:
    assert clean_text("PM's $1.5b plan 'on track'", normalise=True) == "pms 15b plan on track"
    good, bad = run([("20030219", "PM's $1.5b plan 'on track'"), ("20030219", "?!"),
                     ("20030219", "already in style")], IngestConfig(normalise=True))
    assert good["headline"].to_list() == ["pms 15b plan on track", "already in style"]
    assert good["split"].to_list() == [split_of(h) for h in good["headline"].to_list()]
    assert bad["reason"].to_list() == ["empty after cleaning"]
    unchanged, _ = run([("20030219", "PM's $1.5b plan 'on track'")])  # default: off
    assert unchanged["headline"].to_list() == ["PM's $1.5b plan 'on track'"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1), min_size=1, max_size=20))
def test_vectorised_normalise_matches_clean_text(texts: list[str]) -> None:
    good, _ = run([("20030219", t) for t in texts],
                  IngestConfig(normalise=True, max_headline_length=10_000))
    expected = [clean_text(t, normalise=True) for t in texts]
    assert good["headline"].to_list() == [e for e in expected if e]


def test_transliterator() -> None:
    info = transliterator()
    assert info["name"] == "anyascii" and re.fullmatch(r"\d+(\.\d+)*", info["version"])


# -- clean -----------------------------------------------------------------------------


def test_clean_schema_and_values() -> None:
    good, bad = run([("20030219", "  Hello,\tWorld  "), (" 20031001 ", "Zoë")])
    assert good.schema == pl.Schema(HEADLINES_SCHEMA)
    assert bad.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert good.select("publish_date", "headline", "source", "row").rows() == [
        (dt.date(2003, 2, 19), "Hello, World", "t.csv", 1),
        (dt.date(2003, 10, 1), "Zoe", "t.csv", 2),
    ]
    assert bad.height == 0


@pytest.mark.parametrize(
    "date", ["2003-02-19", "2003021", "200302190", "20030230", "20031301", "abcdefgh", "",
             None, "2003 219", "+2003021"],
)
def test_bad_dates(date: str | None) -> None:
    good, bad = run([(date, "fine headline"), ("20030219", "other")])
    assert good["row"].to_list() == [2]
    assert bad.rows() == [("t.csv", 1, "bad date", f"{date or ''},fine headline")]


def test_empty_after_cleaning() -> None:
    good, bad = run([("20030219", "   "), ("20030219", "\x01\x02"), ("20030219", ""),
                     ("20030219", None), ("20030219", "\u200b"), ("20030219", "ok")])
    assert good["headline"].to_list() == ["ok"]
    assert bad["reason"].to_list() == ["empty after cleaning"] * 5


def test_max_headline_length_boundary() -> None:
    config = IngestConfig(max_headline_length=10)
    good, bad = run([("20030219", "x" * 10), ("20030219", "y" * 11),
                     ("20030219", " " * 5 + "z" * 10 + " " * 5)], config)
    assert good["headline"].to_list() == ["x" * 10, "z" * 10]
    assert bad.select("row", "reason").rows() == [(2, "longer than max_headline_length")]


def test_100k_character_headline() -> None:
    good, bad = run([("20030219", "word " * 20_000)])
    assert good.height == 0
    assert bad["reason"].to_list() == ["longer than max_headline_length"]
    assert len(bad["raw"][0]) == 9 + 100_000


def test_reader_reasons_pass_through_and_win() -> None:
    good, bad = run(
        [(None, None), ("bad", "x"), ("20030219", "ok")],
        reason=["ragged row", "undecodable bytes", None],
        raw=["a,b,c", "bad,x\\xe9", None],
    )
    assert good["row"].to_list() == [3]
    assert bad.select("row", "reason", "raw").rows() == [
        (1, "ragged row", "a,b,c"),
        (2, "undecodable bytes", "bad,x\\xe9"),
    ]


def test_reason_precedence_bad_date_before_length() -> None:
    good, bad = run([("nope", ""), ("nope", "x" * 300)])
    assert bad["reason"].to_list() == ["bad date", "bad date"]
    assert set(REASONS) >= set(bad["reason"])


def test_lowercase_config() -> None:
    good, _ = run([("20030219", "MiXeD Case")], IngestConfig(lowercase=True))
    assert good["headline"].to_list() == ["mixed case"]


def test_missing_columns_is_ingest_error() -> None:
    with pytest.raises(IngestError, match="headline_text"):
        clean(pl.LazyFrame({"source": ["a"], "row": [1], "publish_date": ["20030219"]}), CONFIG)


def test_clean_is_lazy() -> None:
    good, bad = clean(raw_frame([("20030219", "a")]), CONFIG)
    assert isinstance(good, pl.LazyFrame) and isinstance(bad, pl.LazyFrame)


# -- splits ----------------------------------------------------------------------------


def test_hash_percentiles_are_pinned() -> None:
    # These must never change: a changed hash would move headlines between splits.
    assert [hash_percentile(t) for t in ("hello world", "headline 3", "headline 6", "")] == [
        20, 1, 7, 76
    ]
    assert split_of("headline 3", CONFIG) == "test"
    assert split_of("headline 6", CONFIG) == "validation"
    assert split_of("hello world", CONFIG) == "train"


def test_split_percentages() -> None:
    assert split_of("headline 6", IngestConfig(validation_percent=0, test_percent=10)) == "test"
    assert split_of("headline 3", IngestConfig(validation_percent=0, test_percent=0)) == "train"
    texts = [f"headline {i}" for i in range(20_000)]
    counts = {s: 0 for s in ("train", "validation", "test")}
    for t in texts:
        counts[split_of(t, CONFIG)] += 1
    assert 800 < counts["test"] < 1200 and 800 < counts["validation"] < 1200


def test_vectorised_split_matches_split_of_and_is_disjoint() -> None:
    texts = [f"headline {i % 500}" for i in range(2_000)]  # each text four times
    config = IngestConfig(validation_percent=10, test_percent=20)
    good, _ = run([(f"2003{1 + i % 12:02d}01", t) for i, t in enumerate(texts)], config)
    assert good["split"].to_list() == [split_of(t, config) for t in good["headline"]]
    per_text = good.group_by("headline").agg(pl.col("split").n_unique())
    assert per_text["split"].max() == 1
    assert set(good["split"]) == {"train", "validation", "test"}


# -- merge -----------------------------------------------------------------------------


def clean_rows(rows: list[tuple[str, str]], source: str = "n.csv") -> pl.LazyFrame:
    good, _ = clean(raw_frame(rows).with_columns(source=pl.lit(source)), CONFIG)
    return good


def test_merge_dedupes_keeping_first_in_order() -> None:
    previous = clean_rows([("20030219", "a"), ("20030219", "b")], "old.csv")
    new = clean_rows([("20030219", "b"), ("20030220", "b"), ("20030219", "c"),
                      ("20030219", "c"), ("20030219", "a")])
    merged = merge(previous, new).collect()
    assert merged.schema == pl.Schema(HEADLINES_SCHEMA)
    assert merged.select("publish_date", "headline", "source").rows() == [
        (dt.date(2003, 2, 19), "a", "old.csv"),
        (dt.date(2003, 2, 19), "b", "old.csv"),
        (dt.date(2003, 2, 20), "b", "n.csv"),
        (dt.date(2003, 2, 19), "c", "n.csv"),
    ]
    assert merge_counts(previous, new).collect().rows(named=True) == [
        {"new_rows": 2, "duplicates": 3}
    ]


def test_merge_without_previous_and_idempotence() -> None:
    new = clean_rows([("20030219", "a"), ("20030219", "a"), ("20030219", "b")])
    first = merge(None, new).collect()
    assert first["headline"].to_list() == ["a", "b"]
    assert merge_counts(None, new).collect().row(0) == (2, 1)
    again = merge(first.lazy(), new)
    assert again.collect().equals(first)
    assert merge_counts(first.lazy(), new).collect().row(0) == (0, 3)


def test_merge_keeps_a_text_in_its_previous_split() -> None:
    # The percentages changed between versions; known texts must not change split.
    old = clean(raw_frame([("20030219", "headline 3")]), CONFIG)[0]
    assert old.collect()["split"].to_list() == ["test"]
    no_test = IngestConfig(validation_percent=0, test_percent=0)
    new = clean(raw_frame([("20030301", "headline 3"), ("20030301", "headline 6")]), no_test)[0]
    merged = merge(old, new).collect()
    assert merged.select("headline", "split").rows() == [
        ("headline 3", "test"), ("headline 3", "test"), ("headline 6", "train")
    ]
