import math

import numpy as np
import pytest

from charlm.data import Corpus
from charlm.evaluate import LENGTH_RANGES, evaluate, headline_nats
from charlm.vocab import EOS, START, encode


def _hand_bits(model, texts):
    """Sum of -log2 p over every character and each end marker, from a numpy softmax."""
    bits, count = 0.0, 0
    per_text = []
    for text in texts:
        ids = encode(text)
        inputs = np.concatenate([[START], ids]).astype(np.int32)[None]
        logits = model(inputs, training=False).numpy()[0].astype(np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        targets = np.concatenate([ids, [EOS]])
        b = -log_probs[np.arange(len(targets)), targets].sum() / math.log(2)
        per_text.append(b)
        bits += b
        count += len(targets)
    return bits, count, per_text


def test_bits_per_char_matches_hand_computation(tiny_model):
    model, _ = tiny_model(cell="lstm", depth=2, hidden=12, embedding=8, dropout=0.3, seed=4)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    texts = ["police probe crash", "a", "wool prices hit record high for second year"]
    bits, count, per_text = _hand_bits(model, texts)
    result = evaluate(model, Corpus.from_texts(texts), batch_size=2)
    assert result["characters"] == count == sum(len(t) + 1 for t in texts)
    assert result["headlines"] == 3
    assert result["bits_per_char"] == pytest.approx(bits / count, rel=1e-6)
    assert result["perplexity"] == pytest.approx(2.0 ** result["bits_per_char"], rel=1e-12)
    nats = headline_nats(model, Corpus.from_texts(texts), batch_size=2)
    np.testing.assert_allclose(nats / math.log(2), per_text, rtol=1e-6)


def test_length_breakdown_adds_up(tiny_model, headlines):
    model, _ = tiny_model(seed=9)
    texts = headlines[:40] + ["x", "", "short one", "y" * 85, "z" * 100, "w" * 79]
    corpus = Corpus.from_texts(texts)
    result = evaluate(model, corpus, batch_size=16)
    by_length = result["by_length"]
    assert sum(b["headlines"] for b in by_length) == result["headlines"] == len(texts)
    assert sum(b["characters"] for b in by_length) == result["characters"] == corpus.characters
    weighted = sum(b["bits_per_char"] * b["characters"] for b in by_length) / result["characters"]
    assert weighted == pytest.approx(result["bits_per_char"], rel=1e-9)
    assert {b["length"] for b in by_length} >= {"0-19", "60-79", "80+"}
    for b in by_length:
        assert b["perplexity"] == pytest.approx(2.0 ** b["bits_per_char"])
    assert len(by_length) <= len(LENGTH_RANGES)


def test_batch_size_does_not_change_the_result(tiny_model, headlines):
    model, _ = tiny_model(seed=2)
    corpus = Corpus.from_texts(headlines[:30])
    a = evaluate(model, corpus, batch_size=1)["bits_per_char"]
    b = evaluate(model, corpus, batch_size=256)["bits_per_char"]
    assert a == pytest.approx(b, rel=1e-6)


def test_empty_corpus_is_rejected(tiny_model):
    model, _ = tiny_model()
    with pytest.raises(ValueError):
        evaluate(model, Corpus.from_texts([]))
