"""Tests for the article baseline (TensorFlow) and its numpy reference forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.article_baseline import ArticleModel, next_char_probs, threshold_filter
from benchmarks.common import VOCABULARY
from charlm.article import read_article

HEADLINES = [
    "man charged over fatal crash",
    "council rejects dam plan",
    "police probe crash",
    "fire crews battle blaze",
    "council to review water plan",
    "storm lashes coast",
    "govt backs new rail link",
    "farmers welcome rain",
    "court fines driver",
    "mayor quits",
] * 2


def _model(unit: str, hidden: int, depth: int, seed: int = 0) -> ArticleModel:
    return ArticleModel(VOCABULARY, hidden, unit, depth, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("unit", ["gru", "lstm"])
def test_fit_decreases_loss(unit: str) -> None:
    model = _model(unit, 16, 2)
    stats = model.fit(HEADLINES, batch_size=20, epochs=8)
    assert stats.batches == 8 and not stats.stopped_early
    assert stats.chars == 8 * sum(len(h) + 1 for h in HEADLINES)  # end markers included
    assert np.log(118) - 0.2 < stats.losses[0] < np.log(118) + 0.2  # near-uniform start
    assert stats.losses[-1] < stats.losses[0] - 0.02


def test_fit_limits_and_determinism() -> None:
    data = list(HEADLINES)
    first = _model("gru", 8, 1, seed=3).fit(data, batch_size=4, epochs=3, max_batches=2)
    second = _model("gru", 8, 1, seed=3).fit(data, batch_size=4, epochs=3, max_batches=2)
    assert data == HEADLINES  # the caller's list is not shuffled in place
    assert first.batches == 2 and first.stopped_early
    assert first.losses == second.losses
    assert _model("gru", 8, 1).fit(data, epochs=5, time_limit_s=0.0).batches == 0


@pytest.mark.parametrize(("unit", "depth"), [("gru", 2), ("lstm", 3)])
def test_save_writes_the_article_format(tmp_path: Path, unit: str, depth: int) -> None:
    hidden = 6
    model = _model(unit, hidden, depth)
    model.save(tmp_path / "m")
    names = (
        ["wr", "br", "wu", "bu", "wa", "ba"]
        if unit == "gru"
        else ["wu", "bu", "wf", "bf", "wo", "bo", "wc", "bc"]
    )
    expected = {f"{n}_{level}.npy" for n in names for level in range(depth)} | {"wy.npy", "by.npy"}
    assert {p.name for p in (tmp_path / "m" / "weights").iterdir()} == expected
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        "vocabulary.txt",
        "inter_time_step_size.txt",
        "unit_type.txt",
        "depth.txt",
        "weights",
    }
    vocab_bytes = (tmp_path / "m" / "vocabulary.txt").read_bytes()
    assert vocab_bytes == "[separator]".join(chr(i) for i in range(10, 128)).encode()
    assert b"\r" in vocab_bytes  # written untranslated
    assert (tmp_path / "m" / "inter_time_step_size.txt").read_bytes() == b"6"
    assert (tmp_path / "m" / "unit_type.txt").read_bytes() == unit.encode()
    assert (tmp_path / "m" / "depth.txt").read_bytes() == str(depth).encode()
    for name in names:
        for level in range(depth):
            array = np.load(tmp_path / "m" / "weights" / f"{name}_{level}.npy")
            rows = (118 if level == 0 else hidden) + hidden
            assert array.dtype == np.float64
            assert array.shape == ((rows, hidden) if name[0] == "w" else (1, hidden))
            np.testing.assert_array_equal(array, getattr(model, name)[level].numpy())
    assert np.load(tmp_path / "m" / "weights" / "wy.npy").shape == (hidden, 118)
    assert np.load(tmp_path / "m" / "weights" / "by.npy").shape == (1, 118)
    assert read_article(tmp_path / "m").vocabulary == list(VOCABULARY)
    reloaded = ArticleModel.load(tmp_path / "m")
    np.testing.assert_array_equal(reloaded.next_char_probs("storm"), model.next_char_probs("storm"))


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("unit", ["gru", "lstm"])
def test_numpy_reference_matches_eager_forward(tmp_path: Path, unit: str, depth: int) -> None:
    model = _model(unit, 8, depth, seed=depth)
    # Larger weights than the initialisation, so gates saturate and outputs are far from
    # uniform: a wrong equation could not hide behind near-constant activations.
    for variable in model.weights:
        variable.assign(variable * 3.0)
    model.save(tmp_path / "m")
    for text in ["", "m", "council rejects dam plan"]:
        reference = next_char_probs(tmp_path / "m", text)
        assert reference.shape == (118,)
        assert reference.sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(reference, model.next_char_probs(text), rtol=0, atol=1e-9)
    with pytest.raises(ValueError):
        next_char_probs(tmp_path / "m", "caf\u00e9")


def _article_sample_word_probs(prob: np.ndarray, threshold: float) -> dict[int, float]:
    """The article's sample_word loop, transcribed, returning index -> kept probability."""
    pairs = [[i, p] for i, p in enumerate(prob.tolist())]
    pairs.sort(reverse=True, key=lambda e: e[1])
    s = 0.0
    for pair in pairs:
        if s > threshold:
            pair[1] = 0
        s += pair[1]
    return {i: p / s for i, p in pairs}


def test_threshold_filter_matches_article_rule() -> None:
    rng = np.random.default_rng(7)
    for threshold in (0.0, 0.5, 0.9, 1.0):
        for _ in range(20):
            prob = rng.dirichlet(np.full(118, 0.3))
            order, kept = threshold_filter(prob, threshold)
            reference = _article_sample_word_probs(prob, threshold)
            np.testing.assert_allclose(kept, [reference[i] for i in order], atol=1e-12)
    # The symbol that crosses the threshold is kept; the ones after it are not.
    order, kept = threshold_filter(np.array([0.1, 0.6, 0.3]), 0.7)
    assert list(order) == [1, 2, 0] and kept.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert threshold_filter(np.array([0.1, 0.6, 0.3]), 0.5)[1].tolist() == [1.0, 0.0, 0.0]


def test_sample_and_predict_next_terminate() -> None:
    model = _model("lstm", 8, 2)
    samples = [model.sample(max_length=15, rng=np.random.default_rng(5)) for _ in range(2)]
    assert samples[0] == samples[1] and len(samples[0]) <= 15
    assert set(samples[0]) <= set(VOCABULARY) - {"\n"}
    assert len(model.predict_next(" storm ", max_length=10)) <= 10
    assert len(model.predict_next("", max_length=10, feed_start=True)) <= 10
