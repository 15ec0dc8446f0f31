"""The training data's headline style, and the one normalisation that maps any title to it.

The ABC headlines the models learn from are written in a reduced style: lowercase ASCII
letters, digits and single spaces, nothing else. Measured on
``abcnews-2003-02-to-09.csv`` (45,914 rows) and ``abcnews-2003-10.csv`` (6,599 rows):
``headline_text`` holds exactly 37 distinct characters, ``a``-``z``, ``0``-``9`` and the
space, never two spaces in a row nor a space at either end. Live feed titles are mixed
case with punctuation, quotes and currency signs (``PM's $1.5b plan 'on track'``); a model
trained on both styles mixed wastes capacity on the difference, so feed titles pass
through `normalise` before they join a dataset.

The rules, applied in this order; each was read off the ABC data (counts from the file
above), where the original punctuation shows through in how words were joined or split:

1. non-ASCII text is transliterated with ``anyascii``, as in today's CSV cleaning
   (``Café`` -> ``Cafe``, curly quotes -> straight quotes, dashes -> ``-``,
   ``€5m`` -> ``EUR5m``, ``…`` -> ``...``);
2. everything is lowercased;
3. ``%`` becomes ``pc`` (the data writes ``20pc`` 59 times, ``per cent`` 14 times) and
   ``&`` becomes `` and ``;
4. apostrophes, double quotes, backticks and ``$`` are deleted, so words stay joined:
   ``PM's`` -> ``pms`` (51 in the data, never ``pm s``), ``don't`` -> ``dont``,
   ``US$40`` -> ``us40``, ``'on track'`` -> ``on track``;
5. a ``,`` between two digits is deleted (``50,000`` -> ``50000``: 167 numbers of 4+ digits
   that are not years, never a ``50 000``);
6. a ``.`` between two letters or digits is deleted (``$1.5b`` -> ``15b``, as the data's
   ``15b``, ``22b``; ``U.S.`` -> ``us``, ``N.Z.`` -> ``nz``);
7. every other character outside ``a-z0-9`` and space becomes a space (``anti-war`` ->
   ``anti war``: 89 times, never ``antiwar``; ``3-0`` -> ``3 0``; ``9/11`` -> ``9 11``);
8. runs of spaces collapse to one, and leading/trailing spaces are trimmed.

The result holds only `ALPHABET` characters with single inner spaces, so `normalise` is
idempotent, and it leaves text already in the style unchanged: applied to the raw ABC
headlines of both files it changes none of them (100.0% unchanged; tests/ingestion
measures it). An empty result (a title of only punctuation) is the caller's to reject.

`normalise` (one string) and `normalise_expr` / `normalise_series` (polars, vectorised)
give identical results; polars' regex engine has no look-around, so rules 5 and 6 are
written as a consuming pattern applied twice, which reaches every separator of a chain such
as ``1,000,000`` or ``u.s.a`` in both implementations.
"""

from __future__ import annotations

import re

import polars as pl
from anyascii import anyascii

__all__ = ["ALPHABET", "IN_STYLE", "normalise", "normalise_expr", "normalise_series"]

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 "
# Text that matches is already in the style (`normalise` leaves it unchanged): a cheap test
# that spares normalising the ABC rows when comparing texts.
IN_STYLE = r"^[a-z0-9]+( [a-z0-9]+)*$"

# (pattern, replacement in Python `re` syntax, replacement in polars syntax, literal?)
# in rule order after transliteration and lowercasing; one list drives both implementations.
_RULES: tuple[tuple[str, str, str, bool], ...] = (
    ("%", "pc", "pc", True),
    ("&", " and ", " and ", True),
    (r"['\"`$]", "", "", False),
    (r"([0-9]),([0-9])", r"\1\2", "${1}${2}", False),
    (r"([0-9]),([0-9])", r"\1\2", "${1}${2}", False),  # second pass: see the docstring
    (r"([a-z0-9])\.([a-z0-9])", r"\1\2", "${1}${2}", False),
    (r"([a-z0-9])\.([a-z0-9])", r"\1\2", "${1}${2}", False),
    (r"[^a-z0-9 ]", " ", " ", False),
    (r" {2,}", " ", " ", False),
)
_COMPILED = tuple(
    (re.compile(re.escape(pattern) if literal else pattern), python)
    for pattern, python, _, literal in _RULES
)


def normalise(text: str) -> str:
    """`text` in the training data's style (lowercase a-z, digits, single spaces)."""
    if not text.isascii():
        text = anyascii(text)
    text = text.lower()
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text.strip(" ")


def _transliterate(s: pl.Series) -> pl.Series:
    # anyascii is a Python call per value: only the non-ASCII rows (rare in headlines) pay it.
    # A string is ASCII exactly when its byte and character lengths agree.
    mask = (s.str.len_bytes() != s.str.len_chars()).fill_null(False)
    if not mask.any():
        return s
    fixed = pl.Series([anyascii(v) for v in s.filter(mask).to_list()], dtype=pl.String)
    return s.clone().scatter(mask.arg_true(), fixed)


def normalise_expr(column: str | pl.Expr) -> pl.Expr:
    """The vectorised twin of `normalise` for a string column (name or expression); nulls stay null.

    Lazy-friendly: only transliteration runs in Python (on non-ASCII rows); the other
    rules are native polars string operations.
    """
    expr = pl.col(column) if isinstance(column, str) else column
    expr = expr.map_batches(_transliterate, return_dtype=pl.String, is_elementwise=True)
    expr = expr.str.to_lowercase()
    for pattern, _, replacement, literal in _RULES:
        expr = expr.str.replace_all(pattern, replacement, literal=literal)
    return expr.str.strip_chars(" ")


def normalise_series(s: pl.Series) -> pl.Series:
    """`normalise` applied to every value of a string series, vectorised; nulls stay null."""
    frame = pl.DataFrame({"text": s.cast(pl.String)})
    return frame.select(normalise_expr("text")).to_series().alias(s.name)
