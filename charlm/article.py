"""Models saved by the article's `save()`: the one reader of that format, and the import of
its float64 .npy weights into our Keras model (`charlm import-article`).

The article's format: `vocabulary.txt` (symbols joined by "[separator]"),
`inter_time_step_size.txt`, `unit_type.txt` (gru | lstm), `depth.txt`, and
`weights/<name>_<level>.npy`: GRU `wr br wu bu wa ba`, LSTM `wu bu wf bf wo bo wc bc`,
plus `wy.npy`, `by.npy`. Every gate multiplies the concatenation [a_prev ; x], so
the first `hidden` rows of each matrix act on the previous state and the rest on
the input (one-hot symbols at level 0; START is the all-zeros vector).

Mapping onto Keras cells:
- LSTM (gate order i, f, c, o): i = article update gate u, f = forget, c = candidate, o = output.
- GRU with reset_after=False (gate order z, r, h): Keras keeps z of the old state
  (h = z*h_prev + (1-z)*cand) where the article keeps 1-u, so z's weights are -u's;
  r is the relevance gate; the candidate applies r to a_prev before its matmul.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from charlm.config import ModelConfig
from charlm.model import build_model, recurrent_layers
from charlm.vocab import ALPHABET, VOCAB_SIZE

# The article's save format (its Model.save), named once here; benchmarks' re-implementation
# of the article writes it with these names too.
VOCABULARY_FILE = "vocabulary.txt"  # the symbols joined by SEPARATOR
SIZE_FILE = "inter_time_step_size.txt"
CELL_FILE = "unit_type.txt"
DEPTH_FILE = "depth.txt"
WEIGHTS_DIR = "weights"  # <gate>_<level>.npy, wy.npy, by.npy
SEPARATOR = "[separator]"
GATES = {"gru": ("wr", "br", "wu", "bu", "wa", "ba"),
         "lstm": ("wu", "bu", "wf", "bf", "wo", "bo", "wc", "bc")}


@dataclass(frozen=True)
class ArticleWeights:
    """Everything in an article save directory, checked, as float64 arrays."""

    vocabulary: list[str]  # always the article's ASCII 10..127 (checked)
    cell: str  # the article's unit_type: "gru" or "lstm"
    hidden: int  # the article's inter_time_step_size
    depth: int
    levels: list[dict[str, np.ndarray]]  # levels[l]["wu"] is weights/wu_<l>.npy, etc.
    wy: np.ndarray  # (hidden, 118)
    by: np.ndarray  # (1, 118)


def _read_text(directory: Path, name: str) -> str:
    try:
        # Bytes, not text mode: universal newlines would turn the vocabulary's "\r" into "\n".
        return (directory / name).read_bytes().decode("ascii")
    except FileNotFoundError:
        raise ValueError(f"{directory} is not an article model: {name} is missing") from None
    except UnicodeDecodeError:
        raise ValueError(f"{directory}/{name} is not ASCII text") from None


def read_article(directory: Path) -> ArticleWeights:
    """Read and check an article save directory; errors name the bad file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory")
    vocabulary = _read_text(directory, VOCABULARY_FILE).split(SEPARATOR)
    if "".join(vocabulary) != ALPHABET or len(vocabulary) != VOCAB_SIZE:
        raise ValueError(f"{directory}/{VOCABULARY_FILE} is not the article's ASCII 10..127 "
                         f"vocabulary ({len(vocabulary)} symbols)")
    cell = _read_text(directory, CELL_FILE).strip()
    if cell not in GATES:
        raise ValueError(f"{directory}/{CELL_FILE} says {cell!r}; expected gru or lstm")
    try:
        hidden = int(_read_text(directory, SIZE_FILE))
        depth = int(_read_text(directory, DEPTH_FILE))
    except ValueError:
        raise ValueError(f"{directory}: {SIZE_FILE} and {DEPTH_FILE} must hold "
                         "integers") from None
    if hidden < 1 or depth < 1:
        raise ValueError(f"{directory}: hidden size {hidden} and depth {depth} must be >= 1")
    levels = []
    for level in range(depth):
        rows = hidden + (VOCAB_SIZE if level == 0 else hidden)  # [a_prev ; input] rows
        levels.append({g: _load(directory, f"{g}_{level}",
                                (rows, hidden) if g[0] == "w" else (1, hidden))
                       for g in GATES[cell]})
    wy = _load(directory, "wy", (hidden, VOCAB_SIZE))
    by = _load(directory, "by", (1, VOCAB_SIZE))
    return ArticleWeights(vocabulary, cell, hidden, depth, levels, wy, by)


def _load(directory: Path, name: str, shape: tuple[int, int]) -> np.ndarray:
    """weights/<name>.npy as float64, checked to have `shape`."""
    path = directory / WEIGHTS_DIR / f"{name}.npy"
    if not path.exists():
        raise ValueError(f"{path} is missing")
    array = np.load(path, allow_pickle=False).astype(np.float64)
    if array.shape != shape:
        raise ValueError(f"{path} has shape {array.shape}, expected {shape}")
    return array


def article_config(article: ArticleWeights) -> ModelConfig:
    return ModelConfig(cell=article.cell, hidden=article.hidden, depth=article.depth,  # type: ignore[arg-type]
                       embedding=0, dropout=0.0, gru_variant="article")


def to_keras(article: ArticleWeights,
             precision: str = "float32") -> tuple[keras.Model, ModelConfig]:
    """A Keras model computing the article model's next-symbol distribution."""
    config = article_config(article)
    model = build_model(config, precision=precision)
    h = article.hidden
    for weights, layer in zip(article.levels, recurrent_layers(model)):
        def split(name: str, w: dict = weights) -> tuple[np.ndarray, np.ndarray]:
            return w[name][h:], w[name][:h]  # (input rows, state rows)

        def bias(name: str, w: dict = weights) -> np.ndarray:
            return w[name][0]

        if article.cell == "lstm":
            parts = [split(g) for g in ("wu", "wf", "wc", "wo")]
            kernel = np.concatenate([p[0] for p in parts], axis=1)
            recurrent = np.concatenate([p[1] for p in parts], axis=1)
            b = np.concatenate([bias(g) for g in ("bu", "bf", "bc", "bo")])
        else:
            (ux, ua), (rx, ra), (ax, aa) = split("wu"), split("wr"), split("wa")
            kernel = np.concatenate([-ux, rx, ax], axis=1)
            recurrent = np.concatenate([-ua, ra, aa], axis=1)
            b = np.concatenate([-bias("bu"), bias("br"), bias("ba")])
        layer.cell.set_weights([kernel, recurrent, b])
    model.get_layer("logits").set_weights([article.wy, article.by[0]])
    return model, config
