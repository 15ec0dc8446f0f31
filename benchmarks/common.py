"""Shared helpers for the benchmarks: the headline alphabet, the hash split and a CSV loader.

The split rule is the one the ingestion code uses, so baselines scored here are comparable
with the pipeline's own validation/test numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

# The article's vocabulary: ASCII 10..127, newline (index 0) doubling as end-of-headline.
VOCABULARY: tuple[str, ...] = tuple(chr(i) for i in range(10, 128))
VOCAB_SIZE: int = len(VOCABULARY)  # 118
EOS: str = "\n"

DEFAULT_CSV = Path("/work/shared/data/abcnews-2003-02-to-09.csv")


def split_of(text: str) -> str:
    """Return "train", "validation" or "test" for a headline, deterministically.

    Hashing the text (not the row number) keeps duplicate headlines in one split, so the
    test set never contains verbatim copies of training lines.
    """
    bucket = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % 100
    if bucket < 5:
        return "test"
    if bucket < 10:
        return "validation"
    return "train"


def split_headlines(texts: Iterable[str]) -> dict[str, list[str]]:
    """Partition headlines by `split_of`, keeping their order within each split."""
    out: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for text in texts:
        out[split_of(text)].append(text)
    return out


def load_headlines(path: str | Path) -> list[str]:
    """Read the `headline_text` column of an ABC-news CSV (LF or CRLF) as a list of strings.

    Null and blank headlines are dropped and surrounding whitespace is stripped, since a
    stray '\\r' or space would otherwise become a character the models must predict.
    """
    import polars as pl  # imported lazily: the numpy-only reference code must not need it

    frame = pl.read_csv(
        Path(path),
        columns=["headline_text"],
        schema_overrides={"headline_text": pl.String},
    )
    column = frame.get_column("headline_text").drop_nulls().str.strip_chars()
    return [text for text in column.to_list() if text]


def check_alphabet(text: str) -> None:
    """Raise ValueError if `text` cannot be encoded in the 118-symbol alphabet.

    A newline inside a headline would be read as its end, so it is rejected too.
    """
    for char in text:
        if not 10 < ord(char) < 128:
            raise ValueError(f"character {char!r} (U+{ord(char):04X}) is outside ASCII 11..127")
