"""Import of models saved by the article's `save()`: its float64 .npy weights into our Keras model.

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

SEPARATOR = "[separator]"
GATES = {"gru": ("wr", "br", "wu", "bu", "wa", "ba"),
         "lstm": ("wu", "bu", "wf", "bf", "wo", "bo", "wc", "bc")}


@dataclass(frozen=True)
class ArticleModel:
    cell: str
    hidden: int
    depth: int
    weights: dict[str, np.ndarray]  # "wu_0", ..., "wy", "by"


def _read_text(directory: Path, name: str) -> str:
    try:
        # Bytes, not text mode: universal newlines would turn the vocabulary's "\r" into "\n".
        return (directory / name).read_bytes().decode("ascii")
    except FileNotFoundError:
        raise ValueError(f"{directory} is not an article model: {name} is missing") from None
    except UnicodeDecodeError:
        raise ValueError(f"{directory}/{name} is not ASCII text") from None


def read_article(directory: Path) -> ArticleModel:
    """Read and check an article save directory; errors name the bad file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory")
    vocabulary = _read_text(directory, "vocabulary.txt").split(SEPARATOR)
    if "".join(vocabulary) != ALPHABET or len(vocabulary) != VOCAB_SIZE:
        raise ValueError(f"{directory}/vocabulary.txt is not the article's ASCII 10..127 "
                         f"vocabulary ({len(vocabulary)} symbols)")
    cell = _read_text(directory, "unit_type.txt").strip()
    if cell not in GATES:
        raise ValueError(f"{directory}/unit_type.txt says {cell!r}; expected gru or lstm")
    try:
        hidden = int(_read_text(directory, "inter_time_step_size.txt"))
        depth = int(_read_text(directory, "depth.txt"))
    except ValueError:
        raise ValueError(f"{directory}: inter_time_step_size.txt and depth.txt must hold "
                         "integers") from None
    if hidden < 1 or depth < 1:
        raise ValueError(f"{directory}: hidden size {hidden} and depth {depth} must be >= 1")
    weights: dict[str, np.ndarray] = {}
    names = [f"{g}_{level}" for level in range(depth) for g in GATES[cell]] + ["wy", "by"]
    for name in names:
        path = directory / "weights" / f"{name}.npy"
        if not path.exists():
            raise ValueError(f"{path} is missing")
        weights[name] = np.load(path, allow_pickle=False).astype(np.float64)
    for level in range(depth):
        rows = hidden + (VOCAB_SIZE if level == 0 else hidden)
        for g in GATES[cell]:
            want = (rows, hidden) if g[0] == "w" else (1, hidden)
            got = weights[f"{g}_{level}"].shape
            if got != want:
                raise ValueError(f"{directory}/weights/{g}_{level}.npy has shape {got}, "
                                 f"expected {want}")
    for name, want in (("wy", (hidden, VOCAB_SIZE)), ("by", (1, VOCAB_SIZE))):
        if weights[name].shape != want:
            raise ValueError(f"{directory}/weights/{name}.npy has shape "
                             f"{weights[name].shape}, expected {want}")
    return ArticleModel(cell, hidden, depth, weights)


def article_config(article: ArticleModel) -> ModelConfig:
    return ModelConfig(cell=article.cell, hidden=article.hidden, depth=article.depth,  # type: ignore[arg-type]
                       embedding=0, dropout=0.0, gru_variant="article")


def to_keras(article: ArticleModel, precision: str = "float32") -> tuple[keras.Model, ModelConfig]:
    """A Keras model computing the article model's next-symbol distribution."""
    config = article_config(article)
    model = build_model(config, precision=precision)
    w, h = article.weights, article.hidden
    for level, layer in enumerate(recurrent_layers(model)):
        def split(name: str, level: int = level) -> tuple[np.ndarray, np.ndarray]:
            m = w[f"{name}_{level}"]
            return m[h:], m[:h]  # (input rows, state rows)

        def bias(name: str, level: int = level) -> np.ndarray:
            return w[f"{name}_{level}"][0]

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
    model.get_layer("logits").set_weights([w["wy"], w["by"][0]])
    return model, config
