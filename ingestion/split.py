"""The hash split: which of train, validation and test a cleaned headline belongs to.

A split is a function of the cleaned text alone: the text's *hash percentile* (0..99, the
8-byte blake2b of its UTF-8, big-endian, mod 100) below `test_percent` is test, below
`test_percent + validation_percent` validation, the rest train. So the same text lands in
the same split in every process, polars version and dataset version, and duplicate texts
never straddle two splits. This is the one home of the rule: the benchmarks import it too.
"""

from __future__ import annotations

import hashlib
from functools import partial
from operator import methodcaller

import numpy as np
import polars as pl

from charlm.config import IngestConfig

__all__ = ["hash_percentile", "split_expr", "split_of"]

# Ordered as the percentile ranges they cover: test first, then validation, then train.
_NAMES = ("test", "validation", "train")


def hash_percentile(text: str) -> int:
    """The text's stable hash percentile 0..99: 8-byte blake2b of its UTF-8, mod 100.

    blake2b (not polars' `hash`, which may change between versions) keeps the assignment
    identical across processes, machines and library versions.
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def _edges(config: IngestConfig) -> tuple[int, int]:
    return config.test_percent, config.test_percent + config.validation_percent


def split_of(text: str, config: IngestConfig = IngestConfig()) -> str:
    """The split ("train", "validation" or "test") of an already-cleaned text."""
    percentile = hash_percentile(text)
    test_end, validation_end = _edges(config)
    if percentile < test_end:
        return "test"
    if percentile < validation_end:
        return "validation"
    return "train"


def _split_batch(config: IngestConfig):
    names = np.array(_NAMES, dtype=object)
    edges = np.array(_edges(config))
    digest = methodcaller("digest")
    blake2b = partial(hashlib.blake2b, digest_size=8)

    def compute(s: pl.Series) -> pl.Series:
        # `hash_percentile` for a whole column: one C-level hashlib call per row (no Python
        # frame per row) and the modulo in numpy; ~0.6 us a row.
        digests = b"".join(map(digest, map(blake2b, s.cast(pl.Binary).to_list())))
        percentiles = np.frombuffer(digests, dtype=">u8") % 100
        split = names[np.searchsorted(edges, percentiles, side="right")]
        return pl.Series(s.name, split, dtype=pl.String)

    return compute


def split_expr(column: str, config: IngestConfig) -> pl.Expr:
    """`split_of` as a polars expression over a column of cleaned texts."""
    return pl.col(column).map_batches(_split_batch(config), return_dtype=pl.String,
                                      is_elementwise=True)
