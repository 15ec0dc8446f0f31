"""Headlines as model input: a compact encoded corpus and length-bucketed batches.

A `Corpus` keeps every headline's ids in one flat int8 buffer with offsets, so a
million headlines cost tens of MB and batches are cut without Python lists of
arrays. Batches group headlines of similar length (padding waste stays small)
and pad the time axis only to the longest headline of the batch (compiled steps use
reduce_retracing, so varying lengths cost no retracing).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import tensorflow as tf

from charlm.vocab import EOS, START, encode_many

# Time steps are padded to a multiple of this. 1: the compiled steps use
# reduce_retracing, so after the second trace any length runs without retracing and
# rounding up would only add padded computation (~8% at 8).
PAD_MULTIPLE = 1
BUCKET_BATCHES = 64  # a shuffled window of this many batches is sorted by length


@dataclass(frozen=True)
class Corpus:
    """Encoded headlines: headline i is flat[offsets[i]:offsets[i+1]]."""

    flat: np.ndarray  # (total_chars,) int8 ids
    offsets: np.ndarray  # (n + 1,) int64

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> Corpus:
        flat, offsets = encode_many(texts)
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def lengths(self) -> np.ndarray:
        """(n,) int32 characters per headline, computed once."""
        return np.diff(self.offsets).astype(np.int32)

    @property
    def characters(self) -> int:
        """Predicted symbols: every character plus one end marker per headline."""
        return int(self.lengths.sum()) + len(self)

    def take(self, indices: np.ndarray) -> Corpus:
        lengths = self.lengths[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        parts = [self.flat[self.offsets[i]:self.offsets[i + 1]] for i in indices]
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)
        return Corpus(flat.astype(np.int8), offsets)


def pad_batch(corpus: Corpus, rows: np.ndarray, max_length: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, targets and weights for headlines `rows`.

    inputs (B, T) int32: START, c1 .. cn, padding
    targets (B, T) int32: c1 .. cn, EOS, padding
    weights (B, T) float32: 1 on the n + 1 real targets, 0 on padding
    Headlines longer than max_length are cut (their EOS is then not predicted).
    """
    own = corpus.lengths[rows]
    lengths = np.minimum(own, max_length)
    steps = int(lengths.max()) + 1
    steps = -(-steps // PAD_MULTIPLE) * PAD_MULTIPLE
    batch = len(rows)
    inputs = np.full((batch, steps), EOS, dtype=np.int32)
    targets = np.full((batch, steps), EOS, dtype=np.int32)
    weights = np.zeros((batch, steps), dtype=np.float32)
    inputs[:, 0] = START
    full = own <= max_length
    for b, (i, n) in enumerate(zip(rows, lengths)):
        ids = corpus.flat[corpus.offsets[i]:corpus.offsets[i] + n]
        inputs[b, 1:n + 1] = ids
        targets[b, :n] = ids
        weights[b, :n + 1 if full[b] else n] = 1.0
    return inputs, targets, weights


def batch_rows(corpus: Corpus, batch_size: int, rng: np.random.Generator | None
               ) -> list[np.ndarray]:
    """Row indices per batch: shuffled (when rng is given), bucketed by length.

    With an rng: shuffle all rows, sort windows of BUCKET_BATCHES batches by
    length, cut into batches and shuffle the batch order. Without: sorted by length.
    """
    n = len(corpus)
    if rng is None:
        order = np.argsort(corpus.lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n).astype(np.int32)  # half the memory of int64 at 1.2M rows
    lengths = corpus.lengths
    window = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, n, window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def to_dataset(corpus: Corpus, rows: list[np.ndarray], max_length: int) -> tf.data.Dataset:
    """tf.data pipeline over precomputed batch rows; padding happens on a prefetch thread."""

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for r in rows:
            yield pad_batch(corpus, r, max_length)

    spec = (
        tf.TensorSpec((None, None), tf.int32),
        tf.TensorSpec((None, None), tf.int32),
        tf.TensorSpec((None, None), tf.float32),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=spec).prefetch(4)
