"""The article's GRU/LSTM equations written out in numpy, float64: an independent test oracle.

One of the two deliberate copies of the article's equations, kept apart from charlm's Keras
cells so that each checks the other:

- this module, the numpy oracle: `charlm import-article` (charlm.article.to_keras) and the
  speed baseline are both tested against it;
- benchmarks/article_baseline.py: the article's model re-implemented in eager TensorFlow,
  the baseline the speed benchmarks measure.

GRU (per level, ``[a; x]`` is concatenation along features)::

    r    = sigmoid([a_prev; x] W_r + b_r)
    u    = sigmoid([a_prev; x] W_u + b_u)
    cand = tanh([r * a_prev; x] W_a + b_a)
    a    = u * cand + (1 - u) * a_prev

LSTM::

    u, f, o = sigmoid([a_prev; x] W_{u,f,o} + b_{u,f,o})
    c    = u * tanh([a_prev; x] W_c + b_c) + f * c_prev
    a    = o * tanh(c)

Output: ``softmax(a_top W_y + b_y)``. Level 0 reads the one-hot character (the all-zeros
vector at the first step); level l > 0 reads level l-1's new ``a``. Weights come from the
one reader of the article's save format, charlm.article.read_article (files only: the
equations here share no code with charlm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charlm.article import ArticleWeights, read_article


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows (no RuntimeWarning for large |z|).
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def sequence_probs(weights: ArticleWeights, text: str) -> np.ndarray:
    """Next-character distributions at every step: row t is P(char t | start, text[:t]).

    Returns shape (len(text) + 1, vocab_size); the last row predicts what follows `text`
    (the end marker included), so scoring a headline h uses ``sequence_probs(w, h)`` with
    targets ``h + "\\n"``.
    """
    index = {char: i for i, char in enumerate(weights.vocabulary)}
    n_vocab = len(weights.vocabulary)
    size = weights.hidden
    a = [np.zeros((1, size)) for _ in range(weights.depth)]
    c = [np.zeros((1, size)) for _ in range(weights.depth)]
    out = np.empty((len(text) + 1, n_vocab))
    x = np.zeros((1, n_vocab))  # the article's start input: an all-zeros "character"
    for t in range(len(text) + 1):
        h = x
        for level, p in enumerate(weights.levels):
            concat = np.concatenate([a[level], h], axis=1)
            if weights.cell == "gru":
                r = _sigmoid(concat @ p["wr"] + p["br"])
                u = _sigmoid(concat @ p["wu"] + p["bu"])
                cand = np.tanh(np.concatenate([r * a[level], h], axis=1) @ p["wa"] + p["ba"])
                a[level] = u * cand + (1.0 - u) * a[level]
            else:
                u = _sigmoid(concat @ p["wu"] + p["bu"])
                f = _sigmoid(concat @ p["wf"] + p["bf"])
                o = _sigmoid(concat @ p["wo"] + p["bo"])
                cand = np.tanh(concat @ p["wc"] + p["bc"])
                c[level] = u * cand + f * c[level]
                a[level] = o * np.tanh(c[level])
            h = a[level]
        out[t] = _softmax((h @ weights.wy + weights.by)[0])
        if t < len(text):
            char = text[t]
            if char not in index:
                raise ValueError(f"character {char!r} is not in the model's vocabulary")
            x = np.zeros((1, n_vocab))
            x[0, index[char]] = 1.0
    return out


def next_char_probs(model_dir: str | Path, text: str) -> np.ndarray:
    """P(next char | start input, then each char of `text`) for a saved article model.

    Shape (vocab_size,) == (118,) for the article's vocabulary; entry i is the probability
    of ``vocabulary[i]`` (for ASCII 10..127, of ``chr(i + 10)``).
    """
    return sequence_probs(read_article(Path(model_dir)), text)[-1]
