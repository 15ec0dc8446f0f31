"""The headline style normalisation: its rules, its twin implementations, and the ABC data."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from anyascii import anyascii
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.style import ALPHABET, normalise, normalise_expr, normalise_series

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
ABC_FILES = ("abcnews-2003-02-to-09.csv", "abcnews-2003-10.csv")

# text rich in what the rules treat specially, plus arbitrary Unicode
_TRICKY = st.text(alphabet="aZ09 .,'\"`$%&-/\t\n’‘“”éÜß€…😀\x00", max_size=40)
_ANY = st.text(max_size=60)
TEXTS = st.one_of(_TRICKY, _ANY)
# no example database (it would be written into the working tree); no deadline (shared cores)
QUICK = settings(database=None, deadline=None)


@pytest.mark.parametrize("title, styled", [
    ("PM's $1.5b plan 'on track'", "pms 15b plan on track"),
    ("Anti-war rally draws 50,000", "anti war rally draws 50000"),
    ("1,000,000 reasons", "1000000 reasons"),
    ("U.S.-led forces enter N.Z. waters", "us led forces enter nz waters"),
    ("Café owner’s ‘hero’ moment", "cafe owners hero moment"),
    ("Rates up 0.25% to 4.75%", "rates up 025pc to 475pc"),
    ("AT&T deal", "at and t deal"),
    ("Roma win 3-0; 9/11 anniversary", "roma win 3 0 9 11 anniversary"),
    ("  Lots\tof   SPACE\n", "lots of space"),
    ("Wait...what? Yes!", "wait what yes"),
    ("US$40 oil", "us40 oil"),
    ("Zürich — “no deal” £5m", "zurich no deal gbp5m"),
    ("1.2.3.4.5", "12345"),
    ("?!", ""),
])
def test_examples(title, styled):
    assert normalise(title) == styled


def test_text_already_in_style_is_unchanged():
    for text in ("pms 15b plan on track", "n korea", "3 0 win", "a", ""):
        assert normalise(text) == text


@QUICK
@given(TEXTS)
def test_output_is_in_style_and_idempotent(text):
    out = normalise(text)
    assert set(out) <= set(ALPHABET)
    assert "  " not in out and out == out.strip(" ")
    assert normalise(out) == out


@settings(QUICK, max_examples=300)
@given(st.lists(st.one_of(st.none(), TEXTS), max_size=30))
def test_vectorised_twin_matches_scalar(values):
    series = pl.Series("headline", values, dtype=pl.String)
    expected = [None if v is None else normalise(v) for v in values]
    got = normalise_series(series)
    assert got.name == "headline" and got.to_list() == expected
    lazy = pl.LazyFrame({"h": series}).select(normalise_expr("h")).collect()["h"]
    assert lazy.to_list() == expected


_JOIN = (re.compile(r"(?<=[0-9]),(?=[0-9])"), re.compile(r"(?<=[a-z0-9])\.(?=[a-z0-9])"))


def _reference(text: str) -> str:
    """The rules written with look-around (which polars lacks), as a check of the twice-applied
    consuming patterns."""
    text = anyascii(text).lower().replace("%", "pc").replace("&", " and ")
    text = re.sub(r"['\"`$]", "", text)
    for pattern in _JOIN:
        text = pattern.sub("", text)
    text = re.sub(r"[^a-z0-9 ]", " ", text)
    return re.sub(r" {2,}", " ", text).strip(" ")


@settings(QUICK, max_examples=300)
@given(st.one_of(TEXTS, st.text(alphabet="01a.,", max_size=30)))
def test_number_and_abbreviation_joins_reach_every_separator(text):
    assert normalise(text) == _reference(text)


@pytest.mark.parametrize("name", ABC_FILES)
def test_abc_headlines_are_already_in_style(name):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    headlines = pl.read_csv(path, columns=["headline_text"])["headline_text"]
    characters = set("".join(headlines.to_list()))
    assert len(characters) == 37 and characters == set(ALPHABET)  # the figure in the docstring
    unchanged = (normalise_series(headlines) == headlines).mean()
    assert unchanged == 1.0, f"normalise changes {1 - unchanged:.4%} of {name}"
