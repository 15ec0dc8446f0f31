"""How good are generated headlines? Cheap, model-free statistics on lists of strings.

Likelihood (bits per char) says how well a model predicts real headlines; these numbers say
what its samples look like: are they new (not copied from the training data), made of real
words, varied, of a realistic length, and do they end on their own. Everything here is pure
Python on strings; the training side is summarised once in a `TrainingIndex` (two hash sets
and the length percentiles) so checking a batch of samples against 1.2M training headlines
costs one set lookup per headline and per word.

Words are whitespace tokens compared exactly (case and punctuation included), matching what
the model was trained on: "Police" and "police," are different words unless ingestion
lowercased the data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EXAMPLES = 20  # generated headlines quoted verbatim in the result (and the report)
TOP_UNSEEN = 20  # most frequent unseen words listed by `unseen_words`
PERCENTILES = (10, 50, 90)


def length_stats(lengths: Iterable[int]) -> dict[str, float]:
    """Mean and 10th/50th/90th percentiles (linear interpolation) of character lengths."""
    # Arrays pass straight through; iterating 1.2M numpy ints one by one is slow.
    values = lengths if isinstance(lengths, np.ndarray) else list(lengths)
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("length statistics need at least one headline")
    p10, p50, p90 = np.percentile(array, PERCENTILES)
    return {"mean": float(array.mean()), "p10": float(p10), "p50": float(p50),
            "p90": float(p90)}


@dataclass(frozen=True)
class TrainingIndex:
    """The training headlines as sets, built once and reused for every batch of samples."""

    headlines: frozenset[str]
    words: frozenset[str]
    data_length: dict[str, float] = field(default_factory=dict)
    size: int = 0  # training headlines indexed, duplicates included

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TrainingIndex:
        texts = texts if isinstance(texts, Sequence) else list(texts)
        if not texts:
            raise ValueError("cannot index an empty list of training headlines")
        words: set[str] = set()
        # One split per headline straight into the set: joining 1.2M headlines first
        # would build a temporary list of ~10M word strings for nothing.
        for text in texts:
            words.update(text.split())
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        return cls(frozenset(texts), frozenset(words), length_stats(lengths), len(texts))

    def __contains__(self, text: object) -> bool:
        return text in self.headlines


def _as_index(training: Sequence[str] | TrainingIndex) -> TrainingIndex:
    return training if isinstance(training, TrainingIndex) else TrainingIndex.from_texts(training)


def _share(part: int, whole: int) -> float:
    # NaN rather than 0 when there is nothing to count (e.g. no bigrams in one-word
    # headlines): the statistic is undefined, not bad; charlm.evaluate does the same.
    return part / whole if whole else float("nan")


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams / total n-grams over all headlines (n-grams never cross headlines)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return _share(len(seen), total)


def sample_quality(generated: list[str], training: Sequence[str] | TrainingIndex,
                   truncated: list[bool] | None = None,
                   max_new_chars: int | None = None) -> dict[str, Any]:
    """Statistics of `generated` headlines against the training headlines (or their index).

    `truncated[i]` is True when sample i hit the length limit without an end marker
    (`charlm.sample.Generation.truncated`). Without it, a sample counts as a runaway when
    it is at least `max_new_chars` characters long (exact only for unprefixed samples); with
    neither, `runaway_rate` is None. Shares are in [0, 1]; NaN where nothing was counted.
    """
    if not generated:
        raise ValueError("sample quality needs at least one generated headline")
    index = _as_index(training)
    n = len(generated)
    if truncated is not None:
        if len(truncated) != n:
            raise ValueError(f"truncated has {len(truncated)} flags for {n} headlines")
        runaway: float | None = sum(bool(t) for t in truncated) / n
    elif max_new_chars is not None:
        runaway = sum(len(text) >= max_new_chars for text in generated) / n
    else:
        runaway = None

    copies = sum(text in index.headlines for text in generated)
    token_lists = [text.split() for text in generated]
    words = sum(len(tokens) for tokens in token_lists)
    known = sum(word in index.words for tokens in token_lists for word in tokens)
    result: dict[str, Any] = {
        "generated_headlines": n,  # distinct from an evaluation's "headlines" count
        "training_headlines": index.size,
        "novelty": (n - copies) / n,
        "copies": copies,
        "word_validity": _share(known, words),
        "words": words,
        "distinct_1": distinct_n(token_lists, 1),
        "distinct_2": distinct_n(token_lists, 2),
        "duplicate_rate": (n - len(set(generated))) / n,
        "length": length_stats(len(text) for text in generated),
        "data_length": dict(index.data_length),
        "runaway_rate": runaway,
        "max_new_chars": max_new_chars,
        "examples": list(generated[:EXAMPLES]),
    }
    return result


def filter_novel(generated: list[str],
                 index: TrainingIndex | Sequence[str]) -> tuple[list[str], int]:
    """Drop verbatim copies of training headlines; returns (kept in order, number dropped).

    Repeats within `generated` are kept: only memorised training headlines are removed.
    """
    index = _as_index(index)
    kept = [text for text in generated if text not in index.headlines]
    return kept, len(generated) - len(kept)



def unseen_words(texts: Iterable[str], training: Sequence[str] | TrainingIndex,
                 top: int = TOP_UNSEEN) -> dict[str, Any]:
    """How much of `texts` (real headlines, e.g. a new batch) uses words never seen in
    training: `unseen_word_share` (unseen word occurrences / all word occurrences, NaN for
    no words), the distinct unseen words, and the `top` most frequent as [word, count]
    pairs (ties by word)."""
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    index = _as_index(training)
    words = 0
    unseen: Counter[str] = Counter()
    for text in texts:
        tokens = text.split()
        words += len(tokens)
        unseen.update(word for word in tokens if word not in index.words)
    ranked = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))
    return {
        "words": words,
        "unseen_words": sum(unseen.values()),
        "unseen_word_share": _share(sum(unseen.values()), words),
        "distinct_unseen_words": len(unseen),
        "top_unseen_words": [[word, count] for word, count in ranked[:top]],
    }
