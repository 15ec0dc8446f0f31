"""Sample-quality statistics on tiny hand-made headline lists with known answers."""

from __future__ import annotations

import math

import pytest

from charlm.quality import (
    TrainingIndex,
    distinct_n,
    filter_novel,
    length_stats,
    sample_quality,
    unseen_words,
)

TRAINING = ["police probe crash", "council backs new hospital", "police probe crash",
            "rain hits farms"]


def test_training_index_holds_headline_and_word_sets():
    index = TrainingIndex.from_texts(TRAINING)
    assert index.headlines == {"police probe crash", "council backs new hospital",
                               "rain hits farms"}
    assert index.words == {"police", "probe", "crash", "council", "backs", "new", "hospital",
                           "rain", "hits", "farms"}
    assert index.size == 4
    assert "rain hits farms" in index and "rain hits" not in index
    with pytest.raises(ValueError):
        TrainingIndex.from_texts([])


def test_novelty_word_validity_distinct_and_duplicates():
    generated = ["police probe crash",       # a training headline: not novel
                 "police probe farms",       # novel, 3/3 known words
                 "council backs zorb",       # novel, 2/3 known words
                 "police probe farms"]       # novel, duplicates the second headline
    q = sample_quality(generated, TRAINING)
    assert q["novelty"] == pytest.approx(3 / 4)
    assert q["copies"] == 1
    assert q["word_validity"] == pytest.approx(11 / 12)
    # words: police x3, probe x3, crash, farms x2, council, backs, zorb -> 7 distinct / 12
    assert q["distinct_1"] == pytest.approx(7 / 12)
    # bigrams: (police probe) x3, (probe crash), (probe farms) x2, (council backs),
    # (backs zorb) -> 5 distinct / 8
    assert q["distinct_2"] == pytest.approx(5 / 8)
    assert q["duplicate_rate"] == pytest.approx(1 / 4)
    assert q["examples"] == generated
    assert q["runaway_rate"] is None


def test_index_and_raw_texts_give_the_same_result():
    generated = ["rain hits crash", "new hospital"]
    index = TrainingIndex.from_texts(TRAINING)
    assert sample_quality(generated, index) == sample_quality(generated, TRAINING)


def test_ngrams_do_not_cross_headlines_and_empty_counts_are_nan():
    assert distinct_n([["a", "b"], ["b", "a"]], 2) == pytest.approx(1.0)  # no (b, b) pair
    assert distinct_n([["a", "b"], ["a", "b"]], 2) == pytest.approx(0.5)
    q = sample_quality(["one", "two", "one"], TRAINING)
    assert math.isnan(q["distinct_2"])  # no bigram at all: undefined, not zero
    assert q["distinct_1"] == pytest.approx(2 / 3)
    assert q["duplicate_rate"] == pytest.approx(1 / 3)
    assert math.isnan(sample_quality([""], TRAINING)["word_validity"])
    with pytest.raises(ValueError):
        sample_quality([], TRAINING)


def test_length_percentiles():
    stats = length_stats([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert stats == {"mean": 6.0, "p10": 2.0, "p50": 6.0, "p90": 10.0}
    q = sample_quality(["ab", "abcd", "abcdef"], ["x" * 10, "y" * 20])
    assert q["length"]["mean"] == pytest.approx(4.0)
    assert q["length"]["p50"] == pytest.approx(4.0)
    assert q["length"]["p10"] == pytest.approx(2.4)
    assert q["data_length"] == {"mean": 15.0, "p10": 11.0, "p50": 15.0, "p90": 19.0}


def test_runaway_rate_from_flags_or_max_new_chars():
    generated = ["short", "x" * 8, "y" * 8, "z" * 7]
    assert sample_quality(generated, TRAINING, truncated=[False, True, False, False],
                          max_new_chars=8)["runaway_rate"] == pytest.approx(1 / 4)
    assert sample_quality(generated, TRAINING, max_new_chars=8)["runaway_rate"] == \
        pytest.approx(2 / 4)
    with pytest.raises(ValueError):
        sample_quality(generated, TRAINING, truncated=[True])


def test_examples_are_the_first_twenty():
    generated = [f"headline {i}" for i in range(30)]
    assert sample_quality(generated, TRAINING)["examples"] == generated[:20]


def test_filter_novel_drops_only_training_copies():
    index = TrainingIndex.from_texts(TRAINING)
    generated = ["rain hits farms", "rain hits town", "police probe crash", "rain hits town",
                 "Rain hits farms"]
    kept, dropped = filter_novel(generated, index)
    assert kept == ["rain hits town", "rain hits town", "Rain hits farms"]
    assert dropped == 2
    assert filter_novel([], index) == ([], 0)


def test_unseen_words_share_and_top_words_by_hand():
    training = ["police probe crash", "council backs plan"]
    new = ["police probe fire", "fire crews battle fire", "council backs crews"]
    # words: 3 + 4 + 3 = 10; unseen occurrences: fire x3, crews x2, battle x1 = 6
    result = unseen_words(new, training)
    assert result["words"] == 10 and result["unseen_words"] == 6
    assert result["unseen_word_share"] == pytest.approx(0.6)
    assert result["distinct_unseen_words"] == 3
    assert result["top_unseen_words"] == [["fire", 3], ["crews", 2], ["battle", 1]]
    assert unseen_words(new, TrainingIndex.from_texts(training), top=2)[
        "top_unseen_words"] == [["fire", 3], ["crews", 2]]
    # ties are broken by the word; case and punctuation count, as in training
    assert unseen_words(["b a", "Police,"], training)["top_unseen_words"] == [
        ["Police,", 1], ["a", 1], ["b", 1]]


def test_unseen_words_of_nothing():
    result = unseen_words([], ["a b"])
    assert result["words"] == 0 and math.isnan(result["unseen_word_share"])
    assert result["top_unseen_words"] == []
    assert unseen_words(["a b"], ["a b"])["unseen_word_share"] == 0.0
    with pytest.raises(ValueError, match="top"):
        unseen_words(["a"], ["a"], top=-1)
