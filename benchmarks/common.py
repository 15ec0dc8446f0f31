"""Shared helpers for the benchmarks: the headline alphabet, the hash split and a CSV loader.

The split rule is the pipeline's own (`ingestion.split.split_of` with the default
percentages), so baselines scored here are comparable with the pipeline's validation/test
numbers.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from charlm.vocab import ALPHABET
from ingestion.split import split_of
from storage.datasets import SPLITS

__all__ = ["DEFAULT_CSV", "END_CHAR", "VOCABULARY", "VOCAB_SIZE", "add_shape_options",
           "load_headlines", "split_headlines", "split_of"]

# The article's vocabulary: ASCII 10..127, newline (index 0) doubling as end-of-headline.
VOCABULARY: tuple[str, ...] = tuple(ALPHABET)
VOCAB_SIZE: int = len(VOCABULARY)  # 118
END_CHAR: str = VOCABULARY[0]  # "\n": the character that ends a headline

# The shared ABC data beside the repository (../shared/data), as in CI.
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "abcnews-2003-02-to-09.csv"


def add_shape_options(parser: argparse.ArgumentParser, hidden: int,
                      precision: str = "mixed_bfloat16") -> None:
    """--hidden, --depth, --batch and --precision: the shape of the network a speed
    benchmark times (each benchmark picks its default width and precision)."""
    parser.add_argument("--hidden", type=int, default=hidden)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--precision", default=precision)


def split_headlines(texts: Iterable[str]) -> dict[str, list[str]]:
    """Partition headlines by `split_of`, keeping their order within each split."""
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for text in texts:
        out[split_of(text)].append(text)
    return out


def load_headlines(path: str | Path) -> list[str]:
    """Read the `headline_text` column of an ABC-news CSV (LF or CRLF) as a list of strings.

    Null and blank headlines are dropped and surrounding whitespace is stripped, since a
    stray '\\r' or space would otherwise become a character the models must predict.
    """
    import polars as pl

    frame = pl.read_csv(
        Path(path),
        columns=["headline_text"],
        schema_overrides={"headline_text": pl.String},
    )
    column = frame.get_column("headline_text").drop_nulls().str.strip_chars()
    return [text for text in column.to_list() if text]
