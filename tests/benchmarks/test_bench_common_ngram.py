"""Tests for the hash split, the CSV loader and the Kneser-Ney n-gram baseline."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import VOCAB_SIZE, load_headlines, split_headlines, split_of
from benchmarks.ngram import MAX_SUPPORTED_ORDER, PAD, KneserNeyLM, _discounts, tune_order

TINY = [
    "man charged over fatal crash",
    "council rejects plan for new dam",
    "police probe fatal crash",
    "man fined over dam plan",
    "fire crews battle blaze near town",
    "council to review water plan",
    "crash kills man near town",
    "police charge man over blaze",
]
REPETITIVE = ["abcabcabcabc", "abcabc", "abcabcabc", "cabcab", "bcabcabca"] * 4


def _hash_percentile(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % 100


def test_split_of_rule_and_known_values() -> None:
    # Known hash percentiles: "g" -> 0, "headline 6" -> 7, "a" -> 43.
    assert split_of("g") == "test"
    assert split_of("headline 6") == "validation"
    assert split_of("a") == "train"
    texts = [f"headline {i}" for i in range(3000)]
    for text in texts[:300]:
        expected = ("test" if _hash_percentile(text) < 5
                    else "validation" if _hash_percentile(text) < 10 else "train")
        assert split_of(text) == expected == split_of(text)
    counts = Counter(map(split_of, texts))
    assert 0.03 < counts["test"] / 3000 < 0.07 and 0.03 < counts["validation"] / 3000 < 0.07
    parts = split_headlines(texts)
    assert sum(map(len, parts.values())) == 3000 and parts["test"][0] in texts


def test_load_headlines_crlf_nulls_and_blanks(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_bytes(
        b"publish_date,headline_text\r\n20031001,first headline\r\n20031001,\r\n"
        b'20031002,  padded one \r\n20031002,"quoted, with comma"\r\n'
    )
    assert load_headlines(path) == ["first headline", "padded one", "quoted, with comma"]


@pytest.mark.parametrize("modified", [True, False])
def test_bits_per_char_finite_and_normalised(modified: bool) -> None:
    model = KneserNeyLM(4, modified=modified).fit(TINY)
    held_out = ["fire crews probe water plan", "zebra quiz {~}"]  # unseen chars and contexts
    for order in range(1, 5):
        bpc = model.bits_per_char(held_out, order)
        assert np.isfinite(bpc) and 0 < bpc < 20
        for prefix in ["", "m", "man ", "council rejects pl", "zzz", "~{|}"]:
            probs = model.next_char_probs(prefix, order)
            assert probs.shape == (VOCAB_SIZE,)
            assert np.all(probs > 0)
            assert probs.sum() == pytest.approx(1.0, abs=1e-12)


def test_order_helps_on_repetitive_text() -> None:
    model = KneserNeyLM(3).fit(REPETITIVE)
    scores = [model.bits_per_char(["abcabcabc", "cabcabcab"], order) for order in (1, 2, 3)]
    assert scores[0] > scores[1] > scores[2]
    best, tuned = tune_order(model, ["abcabcabc"])
    assert best == 3 and set(tuned) == {1, 2, 3}


def test_chained_next_char_probs_match_log2_probs() -> None:
    model = KneserNeyLM(12).fit(TINY)
    text = "police crash plan near dam"
    for order in (1, 3, 5, 12):
        expected = [
            np.log2(model.next_char_probs(text[:i], order)[ord((text + "\n")[i]) - 10])
            for i in range(len(text) + 1)
        ]
        np.testing.assert_allclose(model.log2_probs([text], order), expected, rtol=0, atol=1e-12)


def test_lower_order_of_big_fit_equals_small_fit() -> None:
    big = KneserNeyLM(6).fit(TINY)
    small = KneserNeyLM(3).fit(TINY)
    for prefix in ["", "man c", "police probe fat"]:
        np.testing.assert_allclose(
            big.next_char_probs(prefix, 3), small.next_char_probs(prefix), rtol=0, atol=1e-15
        )


def _reference_probs(train: list[str], order: int, prefix: str, modified: bool) -> np.ndarray:
    """Literal dict-based interpolated KN, written independently of the numpy version."""
    seqs = [[PAD] * (order - 1) + [ord(c) - 10 for c in t] + [0] for t in train]
    raw = {k: Counter() for k in range(1, order + 1)}
    for seq in seqs:
        for end in range(order - 1, len(seq)):
            for k in range(1, order + 1):
                raw[k][tuple(seq[end - k + 1 : end + 1])] += 1
    tables = {order: raw[order]}
    for k in range(1, order):
        tables[k] = Counter(
            {
                g: c if g[0] == PAD else sum(1 for h in raw[k + 1] if h[1:] == g)
                for g, c in raw[k].items()
            }
        )
    discounts = {
        k: _discounts(np.array(list(t.values()), float), modified) for k, t in tables.items()
    }
    context = [PAD] * (order - 1) + [ord(c) - 10 for c in prefix]

    def prob(k: int, w: int) -> float:
        if k == 0:
            return 1.0 / VOCAB_SIZE
        h = tuple(context[len(context) - (k - 1) :]) if k > 1 else ()
        entries = {g: c for g, c in tables[k].items() if g[:-1] == h}
        if not entries:
            return prob(k - 1, w)
        d = discounts[k]
        gamma = sum(d[min(c, 3)] for c in entries.values())
        c = entries.get(h + (w,), 0)
        return (max(c - d[min(c, 3)], 0.0) + gamma * prob(k - 1, w)) / sum(entries.values())

    return np.array([prob(order, w) for w in range(VOCAB_SIZE)])


@pytest.mark.parametrize("modified", [True, False])
@pytest.mark.parametrize("order", [1, 2, 3, 10, 12])
def test_matches_literal_reference(order: int, modified: bool) -> None:
    model = KneserNeyLM(order, modified=modified).fit(TINY)
    for prefix in ["", "man", "police probe fatal", "council rejects plan f", "qq"]:
        np.testing.assert_allclose(
            model.next_char_probs(prefix),
            _reference_probs(TINY, order, prefix, modified),
            rtol=1e-12,
            atol=1e-15,
        )


def test_rejects_characters_outside_the_alphabet() -> None:
    with pytest.raises(ValueError):
        KneserNeyLM(2).fit(["caf\u00e9 opens"])
    with pytest.raises(ValueError):
        KneserNeyLM(2).fit(["two\nlines"])


def test_max_order_range() -> None:
    assert MAX_SUPPORTED_ORDER >= 20
    KneserNeyLM(20)
    for bad in (0, -3, MAX_SUPPORTED_ORDER + 1):
        with pytest.raises(ValueError, match=f"got {bad}$"):
            KneserNeyLM(bad)


@pytest.mark.parametrize("modified", [True, False])
def test_orders_above_nine_leave_lower_orders_unchanged(modified: bool) -> None:
    big = KneserNeyLM(12, modified=modified).fit(TINY)
    small = KneserNeyLM(9, modified=modified).fit(TINY)
    held_out = ["police probe fatal crash near dam", "council rejects water plan", "zq {~}"]
    for order in range(1, 10):
        np.testing.assert_allclose(
            big.log2_probs(held_out, order), small.log2_probs(held_out, order), rtol=0, atol=1e-15
        )
        for prefix in ["", "council rejects plan f", "fire crews battle bla", "qq"]:
            np.testing.assert_allclose(
                big.next_char_probs(prefix, order),
                small.next_char_probs(prefix, order),
                rtol=0,
                atol=1e-15,
            )
