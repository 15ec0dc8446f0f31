"""Exact likelihood metrics: bits per character and perplexity.

Every predicted symbol counts, the end-of-headline marker included; per-position
log-probabilities come from the model in float32 and are summed in float64.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from charlm.data import Corpus, assemble_batch, batch_dataset, batch_rows, corpus_on_device
from charlm.devices import scoring_batch_size
from charlm.loss import token_nll

# Headline length ranges of the per-length breakdown: [low, high) characters.
LENGTH_RANGES: tuple[tuple[int, int], ...] = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 10**9))
LN2 = math.log(2.0)
MAX_SCORED_LENGTH = 10**6  # scoring never cuts a headline


def make_scorer(model: keras.Model, corpus: Corpus, max_length: int = MAX_SCORED_LENGTH):
    """Compiled function: row ids (B,) of `corpus` -> negative log-likelihood of each of
    those headlines in nats, (B,) float64 (summed on the device in float64)."""
    tensors = corpus_on_device(corpus)

    @tf.function(reduce_retracing=True)
    def score(rows: tf.Tensor) -> tf.Tensor:
        inputs, targets, weights = assemble_batch(tensors, rows, max_length)
        logits = model(inputs, training=False)  # (B, T, V)
        nll = token_nll(targets, logits)  # (B, T)
        return tf.reduce_sum(tf.cast(nll, tf.float64) * tf.cast(weights, tf.float64), axis=1)

    return score


def headline_nats(model: keras.Model, corpus: Corpus, batch_size: int | None = None,
                  max_length: int = MAX_SCORED_LENGTH, scorer=None) -> np.ndarray:
    """Negative log-likelihood (nats, float64) of every headline, in corpus order.

    `scorer` (from make_scorer for this corpus) saves tracing when called repeatedly.
    """
    scorer = scorer or make_scorer(model, corpus, max_length)
    plan = batch_rows(corpus, batch_size or scoring_batch_size(), rng=None)
    parts = [scorer(rows) for rows in batch_dataset(plan)]  # no read-back until the end
    totals = np.zeros(len(corpus), dtype=np.float64)
    if parts:
        totals[plan.rows] = tf.concat(parts, axis=0).numpy()
    return totals


def metrics_from_nats(nats: float, characters: int) -> dict[str, float]:
    bpc = nats / LN2 / characters if characters else float("nan")
    return {"bits_per_char": bpc, "perplexity": 2.0 ** bpc, "characters": characters}


def evaluate(model: keras.Model, corpus: Corpus, batch_size: int | None = None
             ) -> dict[str, Any]:
    """Bits per char, perplexity and a breakdown by headline length (`by_length`)."""
    if len(corpus) == 0:
        raise ValueError("cannot evaluate on an empty set of headlines")
    nats = headline_nats(model, corpus, batch_size)
    lengths = corpus.lengths
    result: dict[str, Any] = {
        **metrics_from_nats(float(nats.sum()), corpus.characters),
        "headlines": len(corpus),
    }
    by_length = []
    for low, high in LENGTH_RANGES:
        mask = (lengths >= low) & (lengths < high)
        if mask.any():
            chars = int(lengths[mask].sum() + mask.sum())
            by_length.append({
                "length": f"{low}-{high - 1}" if high < 10**9 else f"{low}+",
                "headlines": int(mask.sum()),
                **metrics_from_nats(float(nats[mask].sum()), chars),
            })
    result["by_length"] = by_length
    return result
