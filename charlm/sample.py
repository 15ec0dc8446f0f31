"""Batched headline generation in one compiled loop.

Every row starts from the START input, is fed its forced prefix (if any) and
then samples until its own end marker or `max_length` new characters. Sampling
is the article's "threshold" rule (top-p / nucleus: keep the most likely
characters until their cumulative probability exceeds p, renormalise, draw),
plus temperature, top-k and greedy. Draws use stateless RNG keyed by
(seed, chunk, step), so the same model, config and request give the same text.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace

import keras
import numpy as np
import tensorflow as tf

from charlm.config import SampleConfig
from charlm.devices import gpu_available
from charlm.model import initial_states, step
from charlm.vocab import EOS, FIRST_CODE, START, VOCAB_SIZE, decode, encode

# Rows per batch (bounds memory for very large jobs) and compiled steps between drops of
# finished rows: a GPU wants wide batches and few host round trips, a CPU small segments.
CPU_CHUNK, GPU_CHUNK = 1024, 16384
CPU_SEGMENT, GPU_SEGMENT = 8, 32

# Symbols a headline may hold: the end marker and printable ASCII 32..126. Ingestion
# removes every other control character, so only an under-trained model would draw
# them, and they would break the one-headline-per-line files.
SAMPLEABLE = np.array([i == EOS or 32 <= i + FIRST_CODE <= 126 for i in range(VOCAB_SIZE)])


@dataclass(frozen=True)
class Generation:
    """Generated rows: texts (prefix included) and whether each hit max_length."""

    texts: list[str]
    truncated: list[bool]  # True when a row reached max_length without an end marker


def filter_logits(logits: tf.Tensor, config: SampleConfig) -> tf.Tensor:
    """Apply temperature, top-k and top-p to logits (B, V); removed symbols become -inf.

    Control characters are always removed (see SAMPLEABLE).
    """
    logits = logits / config.temperature
    neg_inf = tf.fill(tf.shape(logits), tf.constant(-np.inf, logits.dtype))
    logits = tf.where(tf.constant(SAMPLEABLE)[None, :], logits, neg_inf)
    if config.top_k:
        kth = tf.math.top_k(logits, k=min(config.top_k, logits.shape[-1])).values[:, -1:]
        logits = tf.where(logits < kth, neg_inf, logits)
    if config.top_p < 1.0:
        probs = tf.nn.softmax(logits)  # (B, V)
        ordered = tf.sort(probs, direction="DESCENDING")
        before = tf.math.cumsum(ordered, axis=-1, exclusive=True)
        # A symbol is kept while the mass of the more likely ones is still <= top_p.
        kept = tf.where(before <= config.top_p, ordered, tf.ones_like(ordered))
        smallest = tf.reduce_min(kept, axis=-1, keepdims=True)  # (B, 1)
        logits = tf.where(probs < smallest, neg_inf, logits)
    return logits


_SAMPLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sampler(model: keras.Model, config: SampleConfig):
    """The compiled sampler of (model, config), built and traced once per process.

    The seed is an argument of the compiled function, so one sampler serves every seed.
    """
    key = replace(config, seed=0)
    per_model = _SAMPLERS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = make_sampler(model, key)
    return per_model[key]


def segment_length() -> int:
    return GPU_SEGMENT if gpu_available() else CPU_SEGMENT


def chunk_size() -> int:
    return GPU_CHUNK if gpu_available() else CPU_CHUNK


def make_sampler(model: keras.Model, config: SampleConfig):
    """Compiled segment of `segment_length()` steps over the rows still running.

    (token (B,), states, forced (B, P), forced_len (B,), t0, chunk, seed) ->
    (tokens (B, segment), last token, states, finished (B,)). Every integer is int64:
    TensorFlow keeps int32 tensors in host memory, which on a GPU would cost a round trip
    at every step.
    """
    segment = segment_length()

    @tf.function(reduce_retracing=True)
    def run(token, states, forced, forced_len, t0, chunk, seed):
        batch = tf.shape(forced)[0]
        width = tf.shape(forced, out_type=tf.int64)[1]
        finished = tf.zeros([batch], tf.bool)
        out = tf.TensorArray(tf.int64, size=segment)
        for i in tf.range(segment):  # int32: TensorArray indices must be
            t = t0 + tf.cast(i, tf.int64)
            logits, states = step(model, token, states)  # (B, V)
            if config.greedy:
                allowed = tf.where(tf.constant(SAMPLEABLE)[None, :], logits,
                                   tf.fill(tf.shape(logits), tf.constant(-np.inf)))
                drawn = tf.argmax(allowed, axis=-1, output_type=tf.int64)
            else:
                key = tf.stack([seed, chunk * (1 << 20) + t])
                drawn = tf.random.stateless_categorical(
                    filter_logits(logits, config), 1, key, dtype=tf.int64)[:, 0]
            in_prefix = t < forced_len
            prefix_token = tf.gather(forced, tf.minimum(t, width - 1), axis=1)
            nxt = tf.where(in_prefix, prefix_token, drawn)
            nxt = tf.where(finished, tf.constant(EOS, tf.int64), nxt)
            out = out.write(i, nxt)
            finished = finished | (~in_prefix & tf.equal(nxt, EOS)) | (
                t + 1 - forced_len >= config.max_new_chars)
            token = nxt
        return tf.transpose(out.stack()), token, states, finished  # (B, segment)

    return run


def _sample_chunk(model: keras.Model, run, forced: np.ndarray, lengths: np.ndarray,
                  chunk: int, max_length: int, seed: int = 0) -> np.ndarray:
    """Tokens (B, S) after START for one chunk; finished rows leave the batch between
    segments, so the tail of a batch costs only the rows still running."""
    batch = len(forced)
    segment = segment_length()
    total = int(lengths.max()) + max_length
    tokens = np.full((batch, total + segment), EOS, dtype=np.int64)
    active = np.arange(batch)
    token = tf.fill([batch], tf.constant(START, tf.int64))
    states = initial_states(model, batch)
    forced_t, lengths_t = tf.constant(forced, tf.int64), tf.constant(lengths, tf.int64)
    chunk_t, seed_t = tf.constant(chunk, tf.int64), tf.constant(seed, tf.int64)
    t = 0
    while active.size and t < total:
        out, token, states, finished = run(token, states, forced_t, lengths_t,
                                           tf.constant(t, tf.int64), chunk_t, seed_t)
        tokens[active, t:t + segment] = out.numpy()
        t += segment
        keep = np.flatnonzero(~finished.numpy())
        if keep.size < active.size:
            active = active[keep]
            keep_t = tf.constant(keep, tf.int64)
            token = tf.gather(token, keep_t)
            states = [tf.gather(x, keep_t) for x in states]
            forced_t, lengths_t = tf.gather(forced_t, keep_t), tf.gather(lengths_t, keep_t)
    return tokens[:, :total]


def generate(model: keras.Model, n: int, config: SampleConfig,
             prefixes: Sequence[str] | None = None) -> Generation:
    """n headlines; row i starts with prefixes[i % len(prefixes)] when prefixes are given."""
    if n < 1:
        raise ValueError(f"number of headlines must be >= 1, got {n}")
    prefixes = list(prefixes) if prefixes else [""]
    encoded = [encode(p) for p in prefixes]
    run = sampler(model, config)
    texts: list[str] = []
    truncated: list[bool] = []
    size = chunk_size()
    for chunk, first in enumerate(range(0, n, size)):
        rows = [encoded[i % len(encoded)] for i in range(first, min(n, first + size))]
        width = max(1, max(len(r) for r in rows))
        forced = np.full((len(rows), width), EOS, dtype=np.int64)
        for i, r in enumerate(rows):
            forced[i, :len(r)] = r
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        tokens = _sample_chunk(model, run, forced, lengths, chunk, config.max_new_chars,
                               config.seed)
        for row, plen in zip(tokens, lengths):
            text = decode(row)
            texts.append(text)
            truncated.append(len(text) - plen >= config.max_new_chars)
    return Generation(texts, truncated)


def complete(model: keras.Model, prefixes: Sequence[str], config: SampleConfig) -> list[str]:
    """The article's predict_next for a batch: the continuation of each prefix (prefix excluded).

    Unlike the article, the model first sees the START input, then the whole prefix.
    """
    if not prefixes:
        raise ValueError("complete needs at least one prefix")
    result = generate(model, len(prefixes), config, prefixes)
    return [text[len(p):] for text, p in zip(result.texts, prefixes)]
