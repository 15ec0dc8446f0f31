"""Headlines as model input: one flat encoded corpus, batch plans, and batches cut in the graph.

A `Corpus` keeps every headline's ids in one flat int8 buffer with offsets, so a million
headlines cost tens of MB and nothing is held per headline in Python. Its TensorFlow view
(`Corpus.tensors`) shares that buffer (DLPack, no copy).

An epoch is a `BatchPlan`: which rows form each batch, in which order, computed with numpy
(shuffled, then sorted by length inside windows of LENGTH_WINDOW batches so padding stays
small). tf.data streams the plan's row ids (a few bytes per headline); the padded
(inputs, targets, weights) of a batch are cut from the corpus by `assemble_batch` inside
the compiled training or scoring step, on the device that runs it. The time axis is padded
only to the longest headline of the batch, and nothing runs in Python per row or per step.

Why the batch is cut in the step and not in a tf.data `map`: a tf.data function copies the
tensors it captures (measured: +400 MB for a 400 MB corpus), while a `tf.function` captures
them by reference; and on a GPU the corpus then lives on the device, so a step moves only
its row ids there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from charlm.vocab import EOS, START, encode_many

LENGTH_WINDOW = 64  # a shuffled window of this many batches is sorted by length
ALIGN = 64  # bytes: TensorFlow's buffer alignment, needed to share numpy memory zero-copy
PAD_ROW = -1  # a row id that fills a batch up for several replicas; it has weight 0


def _aligned(values: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `values` whose buffer starts on an ALIGN-byte boundary."""
    values = np.asarray(values)
    raw = np.empty(values.nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    out = raw[start:start + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


def _shared_tensor(values: np.ndarray) -> tf.Tensor:
    """A CPU tensor over `values`' own memory when it is aligned (else a copy)."""
    if values.size and values.flags.c_contiguous and values.ctypes.data % ALIGN == 0:
        return tf.experimental.dlpack.from_dlpack(values.__dlpack__())
    return tf.constant(values)


class CorpusTensors(NamedTuple):
    """A corpus as tensors: headline i is flat[starts[i]:starts[i] + lengths[i]]."""

    flat: tf.Tensor  # (N,) int8 ids on a CPU; int64 where the corpus was put on a GPU
    starts: tf.Tensor  # (n,) int64
    lengths: tf.Tensor  # (n,) int32


@dataclass(frozen=True, eq=False)
class Corpus:
    """Encoded headlines: headline i is flat[offsets[i]:offsets[i+1]]."""

    flat: np.ndarray  # (total_chars,) int8 ids
    offsets: np.ndarray  # (n + 1,) int64

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> Corpus:
        flat, offsets = encode_many(texts)
        return cls(_aligned(flat), _aligned(offsets))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def lengths(self) -> np.ndarray:
        """(n,) int32 characters per headline, computed once."""
        return _aligned(np.diff(self.offsets).astype(np.int32))

    @property
    def characters(self) -> int:
        """Predicted symbols: every character plus one end marker per headline."""
        return int(self.lengths.sum()) + len(self)

    @cached_property
    def tensors(self) -> CorpusTensors:
        """The corpus as CPU tensors sharing this object's buffers."""
        # An empty corpus still gets one element, so gathers in a traced step stay valid.
        flat = self.flat if self.flat.size else _aligned(np.zeros(1, np.int8))
        # offsets[:-1] starts where the aligned offsets buffer does: shared, not copied
        starts = self.offsets[:-1] if len(self) else _aligned(np.zeros(0, np.int64))
        return CorpusTensors(_shared_tensor(flat), _shared_tensor(starts),
                             _shared_tensor(self.lengths))

    def take(self, indices: np.ndarray) -> Corpus:
        """The headlines `indices`, in that order, as a new corpus (vectorised copy)."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices].astype(np.int64)
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Source position of every output character: its headline's start + its offset in it.
        within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        source = np.repeat(self.offsets[:-1][indices], lengths) + within
        return Corpus(_aligned(self.flat[source]), _aligned(offsets))


def corpus_on_device(corpus: Corpus) -> CorpusTensors:
    """`corpus.tensors` placed on the current device (call under a device or replica scope).

    On a CPU this is the shared buffer itself. On a GPU the ids become int64: TensorFlow's GPU
    gather has no int8 kernel, and int32 tensors are kept in host memory.
    """
    tensors = corpus.tensors
    device = tf.identity(tensors.lengths).device  # where ops run in this scope
    if "GPU" not in device.upper():
        return tensors
    return CorpusTensors(tf.identity(tf.cast(tensors.flat, tf.int64)),
                         tf.identity(tensors.starts), tf.identity(tensors.lengths))


@dataclass(frozen=True, eq=False)
class BatchPlan:
    """Batch b holds rows[splits[b]:splits[b + 1]]; a sequence of (B,) int32 arrays."""

    rows: np.ndarray  # (n,) int32 row ids in batch order
    splits: np.ndarray  # (batches + 1,) int64

    def __len__(self) -> int:
        return len(self.splits) - 1

    def __getitem__(self, b: int) -> np.ndarray:
        if not -len(self) <= b < len(self):
            raise IndexError(f"batch {b} of {len(self)}")
        b %= len(self)
        return self.rows[self.splits[b]:self.splits[b + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[b] for b in range(len(self)))


def batch_rows(corpus: Corpus, batch_size: int, rng: np.random.Generator | None) -> BatchPlan:
    """The batches of an epoch: shuffled (when rng is given) and grouped by length.

    With an rng: shuffle all rows, sort windows of LENGTH_WINDOW batches by length, cut
    into batches and shuffle the batch order. Without: every row sorted by length.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(corpus)
    lengths = corpus.lengths
    # The plan is rebuilt at every epoch's start, so its transients count in training's peak
    # memory: one int32 array of row ids is sorted in place, window by window (a lexsort
    # over every row held four row-sized arrays, two of them int64: ~28 MB at 1.2M rows).
    index = np.int32 if n < 2**31 else np.int64
    if rng is None:
        order = np.argsort(lengths, kind="stable").astype(index)
    else:
        order = np.arange(n, dtype=index)
        rng.shuffle(order)  # in place: the permutation rng.permutation(n) would draw
        span = batch_size * LENGTH_WINDOW
        for start in range(0, n, span):  # every window stays in place, sorted inside
            window = order[start:start + span]
            window[:] = window[np.argsort(lengths[window], kind="stable")]
    bounds = np.arange(0, n, batch_size, dtype=np.int64)
    count = len(bounds)
    if rng is not None:
        bounds = bounds[rng.permutation(count)]
    sizes = np.minimum(bounds + batch_size, n) - bounds
    splits = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(sizes, out=splits[1:])
    rows = np.empty_like(order)
    for b, at, size in zip(bounds.tolist(), splits.tolist(), sizes.tolist()):
        rows[at:at + size] = order[b:b + size]  # ~1 us a batch; no row-sized temporaries
    return BatchPlan(rows, splits)


def batch_dataset(plan: BatchPlan, skip: int = 0, replicas: int = 1) -> tf.data.Dataset:
    """Row ids of each batch from `skip` on, (B,) int32.

    With several replicas a batch is filled up with PAD_ROW ids to a multiple of
    `replicas`, so each replica gets the same number of rows (row r::replicas).
    """
    rows = tf.RaggedTensor.from_row_splits(plan.rows, plan.splits, validate=False)[skip:]
    dataset = tf.data.Dataset.from_tensor_slices(rows)
    if replicas > 1:
        def fill(ids: tf.Tensor) -> tf.Tensor:
            missing = (-tf.size(ids)) % replicas
            return tf.concat([ids, tf.fill([missing], tf.constant(PAD_ROW, tf.int32))], 0)

        dataset = dataset.map(fill)
    # No prefetch and no autotuning: slicing a batch of row ids takes microseconds, and
    # an iterator with tf.data's autotuning thread blocks in its destructor until that
    # thread wakes (measured: up to 10 s at the end of an epoch or a validation pass).
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def assemble_batch(corpus: CorpusTensors, rows: tf.Tensor, max_length: int
                   ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Inputs, targets and weights of headlines `rows` (B,), cut from the corpus tensors.

    inputs (B, T) int64: START, c1 .. cn, padding
    targets (B, T) int64: c1 .. cn, EOS, padding
    weights (B, T) float32: 1 on the n + 1 real targets, 0 on padding
    T is the longest (cut) headline + 1. Headlines longer than max_length are cut (their
    EOS is then not predicted); PAD_ROW rows have weight 0 everywhere.
    """
    valid = rows >= 0
    safe = tf.maximum(rows, 0)
    own = tf.where(valid, tf.gather(corpus.lengths, safe), 0)  # (B,)
    cut = tf.minimum(own, max_length)  # (B,)
    steps = tf.reduce_max(tf.concat([cut, [0]], 0)) + 1
    t = tf.range(steps)[None, :]  # (1, T)
    in_text = t < cut[:, None]  # (B, T)
    last = tf.cast(tf.size(corpus.flat) - 1, tf.int64)
    offset = tf.cast(tf.minimum(t, tf.maximum(cut[:, None] - 1, 0)), tf.int64)
    positions = tf.minimum(tf.gather(corpus.starts, safe)[:, None] + offset, last)  # (B, T)
    ids = tf.cast(tf.gather(corpus.flat, positions), tf.int64)
    targets = tf.where(in_text, ids, tf.constant(EOS, tf.int64))
    starts = tf.fill(tf.stack([tf.size(rows), 1]), tf.constant(START, tf.int64))
    inputs = tf.concat([starts, targets[:, :-1]], axis=1)
    ends = (t == cut[:, None]) & ((own <= max_length) & valid)[:, None]
    weights = tf.cast(in_text | ends, tf.float32)
    return inputs, targets, weights


def pad_batch(corpus: Corpus, rows: np.ndarray, max_length: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`assemble_batch` run eagerly, as numpy arrays (for inspection and tests)."""
    inputs, targets, weights = assemble_batch(
        corpus.tensors, tf.constant(np.asarray(rows, dtype=np.int32)), max_length)
    return inputs.numpy(), targets.numpy(), weights.numpy()
