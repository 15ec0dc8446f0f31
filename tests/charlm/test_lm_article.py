"""Import of the article's saved models, checked against its equations written out in numpy
(the oracle in benchmarks/article_numpy.py)."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks.article_numpy import sequence_probs
from charlm.article import GATES, ArticleWeights, read_article, to_keras
from charlm.vocab import ALPHABET, START, VOCAB_SIZE, encode

TEXTS = ["council calls for new hospital", "", "A\rB\x0b~\x7f 12%$", "x"]


def write_article_dir(directory: Path, cell: str, depth: int, hidden: int, seed: int) -> dict:
    """What the article's Model.save writes (text files opened with 'w'), random float64 weights."""
    rng = np.random.default_rng(seed)
    (directory / "weights").mkdir(parents=True)
    vocabulary = [chr(i) for i in range(10, 128)]
    with open(directory / "vocabulary.txt", "w") as f:
        f.write("[separator]".join(vocabulary))
    with open(directory / "inter_time_step_size.txt", "w") as f:
        f.write(str(hidden))
    with open(directory / "unit_type.txt", "w") as f:
        f.write(cell)
    with open(directory / "depth.txt", "w") as f:
        f.write(str(depth))
    weights = {}
    for level in range(depth):
        rows = hidden + (VOCAB_SIZE if level == 0 else hidden)
        for name in GATES[cell]:
            shape = (rows, hidden) if name[0] == "w" else (1, hidden)
            weights[f"{name}_{level}"] = rng.normal(0.0, 0.6, shape)
    weights["wy"] = rng.normal(0.0, 0.8, (hidden, VOCAB_SIZE))
    weights["by"] = rng.normal(0.0, 0.5, (1, VOCAB_SIZE))
    for name, array in weights.items():
        np.save(directory / "weights" / f"{name}.npy", array)
    return weights


def keras_probs(model, text: str) -> np.ndarray:
    tokens = np.concatenate([[START], encode(text)]).astype(np.int32)[None]
    logits = model(tokens, training=False).numpy()[0].astype(np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def oracle_probs(weights: dict, cell: str, depth: int, hidden: int, text: str) -> np.ndarray:
    """The article's equations (the numpy oracle in benchmarks/article_numpy.py) on the
    weights as this test wrote them, not as the importer read them back."""
    levels = [{g: weights[f"{g}_{level}"] for g in GATES[cell]} for level in range(depth)]
    return sequence_probs(ArticleWeights(list(ALPHABET), cell, hidden, depth, levels,
                                         weights["wy"], weights["by"]), text)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_imported_model_matches_article_equations(tmp_path, cell, depth):
    hidden = 16
    weights = write_article_dir(tmp_path / "m", cell, depth, hidden, seed=depth * 10 + len(cell))
    article = read_article(tmp_path / "m")
    assert (article.cell, article.hidden, article.depth) == (cell, hidden, depth)
    model, config = to_keras(article)
    assert config.embedding == 0 and config.dropout == 0.0 and config.depth == depth
    for text in TEXTS:
        want = oracle_probs(weights, cell, depth, hidden, text)
        got = keras_probs(model, text)
        assert got.shape == want.shape == (len(text) + 1, VOCAB_SIZE)
        assert np.abs(got - want).max() < 1e-5, (text, np.abs(got - want).max())
        # not trivially uniform: the weights shape the distribution
        assert np.abs(want - 1.0 / VOCAB_SIZE).max() > 0.01


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_agrees_with_the_oracle_on_what_the_reader_read(tmp_path, cell):
    write_article_dir(tmp_path / "m", cell, 2, 12, seed=99)
    article = read_article(tmp_path / "m")
    model, _ = to_keras(article)
    for text in TEXTS:
        want = sequence_probs(article, text)
        assert np.abs(keras_probs(model, text) - want).max() < 1e-5


def _good(tmp_path, name="m", cell="gru", depth=2, hidden=4):
    directory = tmp_path / name
    write_article_dir(directory, cell, depth, hidden, seed=1)
    read_article(directory)  # the unbroken directory is accepted
    return directory


@pytest.mark.parametrize("missing", ["vocabulary.txt", "unit_type.txt", "depth.txt",
                                     "inter_time_step_size.txt", "weights/wa_1.npy",
                                     "weights/wy.npy", "weights/br_0.npy"])
def test_missing_file_is_named(tmp_path, missing):
    directory = _good(tmp_path)
    (directory / missing).unlink()
    with pytest.raises(ValueError, match=Path(missing).name):
        read_article(directory)


def test_wrong_shape_is_named(tmp_path):
    directory = _good(tmp_path)
    np.save(directory / "weights" / "wu_1.npy", np.zeros((4 + VOCAB_SIZE, 4)))
    with pytest.raises(ValueError, match="wu_1.npy"):
        read_article(directory)
    directory = _good(tmp_path, "b")
    np.save(directory / "weights" / "by.npy", np.zeros((VOCAB_SIZE,)))
    with pytest.raises(ValueError, match="by.npy"):
        read_article(directory)
    directory = _good(tmp_path, "c")
    (directory / "inter_time_step_size.txt").write_text("5")  # weights are for 4
    with pytest.raises(ValueError, match="wr_0.npy"):
        read_article(directory)


@pytest.mark.parametrize("vocabulary", [
    [chr(i) for i in range(11, 128)],  # no end marker
    [chr(i) for i in range(10, 127)] + ["\u00e9"],
    [chr(i) for i in range(127, 9, -1)],  # reordered
    [chr(i) for i in range(32, 128)],  # printable only
])
def test_wrong_vocabulary_is_named(tmp_path, vocabulary):
    directory = _good(tmp_path)
    with open(directory / "vocabulary.txt", "w") as f:
        f.write("[separator]".join(vocabulary))
    with pytest.raises(ValueError, match="vocabulary.txt"):
        read_article(directory)


@pytest.mark.parametrize("unit", ["rnn", "GRUU", ""])
def test_unknown_unit_type_is_named(tmp_path, unit):
    directory = _good(tmp_path)
    (directory / "unit_type.txt").write_text(unit)
    with pytest.raises(ValueError, match="unit_type.txt"):
        read_article(directory)


@pytest.mark.parametrize("name,value", [("depth.txt", "two"), ("depth.txt", "0"),
                                        ("inter_time_step_size.txt", "-4")])
def test_bad_sizes(tmp_path, name, value):
    directory = _good(tmp_path)
    (directory / name).write_text(value)
    with pytest.raises(ValueError):
        read_article(directory)


def test_not_a_directory(tmp_path):
    with pytest.raises(ValueError):
        read_article(tmp_path / "nope")
