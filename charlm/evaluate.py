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

from charlm.data import Corpus, batch_rows, pad_batch

# Headline length ranges of the per-length breakdown: [low, high) characters.
LENGTH_RANGES: tuple[tuple[int, int], ...] = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 10**9))
LN2 = math.log(2.0)


def make_scorer(model: keras.Model):
    """Compiled function: (inputs, targets) -> per-position negative log-likelihood in nats."""

    @tf.function(reduce_retracing=True)
    def score(inputs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        logits = model(inputs, training=False)  # (B, T, V)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)  # (B, T)

    return score


def headline_nats(model: keras.Model, corpus: Corpus, batch_size: int = 256,
                  max_length: int = 10**6, scorer=None) -> np.ndarray:
    """Negative log-likelihood (nats, float64) of every headline, in corpus order."""
    scorer = scorer or make_scorer(model)
    totals = np.zeros(len(corpus), dtype=np.float64)
    for rows in batch_rows(corpus, batch_size, rng=None):
        inputs, targets, weights = pad_batch(corpus, rows, max_length)
        nll = scorer(inputs, targets).numpy().astype(np.float64)
        totals[rows] = (nll * weights).sum(axis=1)
    return totals


def metrics_from_nats(nats: float, characters: int) -> dict[str, float]:
    bpc = nats / LN2 / characters if characters else float("nan")
    return {"bits_per_char": bpc, "perplexity": 2.0 ** bpc, "characters": characters}


def evaluate(model: keras.Model, corpus: Corpus, batch_size: int = 256) -> dict[str, Any]:
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
