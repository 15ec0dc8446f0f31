"""Numpy-only reader and forward pass for models saved in the article's directory format.

This is the reference that the importer (``charlm import-article``) is tested against, so it
depends on numpy alone and spells the article's equations out literally, in float64:

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
vector at the first step); level l > 0 reads level l-1's new ``a``.

Directory layout (as written by the article's ``Model.save``)::

    vocabulary.txt            chars joined with "[separator]"
    inter_time_step_size.txt  e.g. "512"
    unit_type.txt             "gru" or "lstm"
    depth.txt                 e.g. "3"
    weights/<name>_<level>.npy, weights/wy.npy, weights/by.npy
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEPARATOR = "[separator]"
WEIGHT_NAMES: dict[str, tuple[str, ...]] = {
    "gru": ("wr", "br", "wu", "bu", "wa", "ba"),
    "lstm": ("wu", "bu", "wf", "bf", "wo", "bo", "wc", "bc"),
}


@dataclass
class ArticleWeights:
    """Everything in an article model directory, as numpy float64 arrays."""

    vocabulary: list[str]
    inter_time_step_size: int
    unit_type: str
    depth: int
    levels: list[dict[str, np.ndarray]]  # levels[l]["wr"] is weights/wr_<l>.npy, etc.
    wy: np.ndarray  # (inter_time_step_size, vocab_size)
    by: np.ndarray  # (1, vocab_size)


def _read_text(path: Path) -> str:
    # Bytes, not text mode: universal-newline reading would turn the vocabulary's '\r'
    # (ASCII 13) into '\n' and silently duplicate the end marker (the article's own
    # load() has exactly that bug).
    return path.read_bytes().decode("utf-8")


def read_article_dir(model_dir: str | Path) -> ArticleWeights:
    """Load and shape-check a model directory in the article's saved format."""
    model_dir = Path(model_dir)
    vocabulary = _read_text(model_dir / "vocabulary.txt").split(SEPARATOR)
    if len(set(vocabulary)) != len(vocabulary) or any(len(c) != 1 for c in vocabulary):
        raise ValueError(f"{model_dir}/vocabulary.txt does not hold distinct single characters")
    size = int(_read_text(model_dir / "inter_time_step_size.txt").strip())
    unit_type = _read_text(model_dir / "unit_type.txt").strip()
    depth = int(_read_text(model_dir / "depth.txt").strip())
    if unit_type not in WEIGHT_NAMES:
        raise ValueError(f"unit_type must be 'gru' or 'lstm', got {unit_type!r}")
    if depth < 1 or size < 1:
        raise ValueError(f"depth and inter_time_step_size must be >= 1, got {depth}, {size}")

    n_vocab = len(vocabulary)
    levels: list[dict[str, np.ndarray]] = []
    for level in range(depth):
        # Level 0 concatenates [a; one-hot char], deeper levels [a; a_below].
        rows = size + (n_vocab if level == 0 else size)
        arrays: dict[str, np.ndarray] = {}
        for name in WEIGHT_NAMES[unit_type]:
            array = np.load(model_dir / "weights" / f"{name}_{level}.npy").astype(np.float64)
            expected = (rows, size) if name.startswith("w") else (1, size)
            if array.shape != expected:
                raise ValueError(f"{name}_{level}.npy has shape {array.shape}, want {expected}")
            arrays[name] = array
        levels.append(arrays)
    wy = np.load(model_dir / "weights" / "wy.npy").astype(np.float64)
    by = np.load(model_dir / "weights" / "by.npy").astype(np.float64)
    if wy.shape != (size, n_vocab) or by.shape != (1, n_vocab):
        raise ValueError(f"wy/by have shapes {wy.shape}/{by.shape}, want ({size}, {n_vocab})")
    return ArticleWeights(vocabulary, size, unit_type, depth, levels, wy, by)


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
    size = weights.inter_time_step_size
    a = [np.zeros((1, size)) for _ in range(weights.depth)]
    c = [np.zeros((1, size)) for _ in range(weights.depth)]
    out = np.empty((len(text) + 1, n_vocab))
    x = np.zeros((1, n_vocab))  # the article's start input: an all-zeros "character"
    for t in range(len(text) + 1):
        h = x
        for level, p in enumerate(weights.levels):
            concat = np.concatenate([a[level], h], axis=1)
            if weights.unit_type == "gru":
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
    return sequence_probs(read_article_dir(model_dir), text)[-1]
