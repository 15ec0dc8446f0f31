"""Character n-gram baseline: interpolated (modified) Kneser-Ney over the 118-symbol alphabet.

Symbols are ASCII 10..127 (index = ord - 10); the newline (index 0) ends every headline and
is predicted like any other character. Each headline is preceded by ``max_order - 1`` copies
of a start-of-headline pad symbol (index 118) that only ever appears in contexts.

Estimation (Chen & Goodman 1998, interpolated modified KN):

    P_k(w | h) = (max(a_k(hw) - D_k(a_k(hw)), 0) + gamma_k(h) * P_{k-1}(w | h')) / sum_w a_k(hw)
    gamma_k(h) = D_k1 N1(h.) + D_k2 N2(h.) + D_k3+ N3+(h.)

with h' = h minus its oldest symbol, P_0 = uniform over the 118 symbols, and P_k = P_{k-1}
for contexts never seen. a_k is the raw count at the model's highest order and the
continuation count N1+(. hw) below it, except for n-grams that begin with the pad symbol,
which cannot be extended to the left and keep their raw count (as KenLM does). Discounts
come from each order's count-of-counts.

One `fit` at ``max_order`` serves every order <= max_order: raw and continuation tables are
both kept, so orders are tuned on validation data without refitting. All counting is
vectorised numpy on int64 keys, built one order at a time from dense ids (exact: no hashing):

    key_k(hw) = id_{k-1}(h) * 128 + w        id_1(s) = s (the symbol itself)
    id_k(g)   = rank of key_k(g) among the training k-grams' sorted keys

so ``key // 128`` is the context's id and ``key % 128`` the predicted symbol. Ids never
exceed the number of training characters, so keys fit int64 at any order. The
all-pad k-gram, the context of a headline's first characters, gets the id one past the last
rank (it sorts after every other k-gram, as PAD is the largest symbol). Continuation counts
come from the per-position pairs (id of the k-gram, id of its (k-1)-gram suffix ending at
the same position). A query n-gram is mapped to training ids by binary search, order by
order; once a (k-1)-gram is unseen, every longer context ending there is unseen too, so the
probability stays the lower-order one.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    DEFAULT_CSV,
    VOCAB_SIZE,
    load_headlines,
    split_headlines,
)

PAD = VOCAB_SIZE  # 118: start-of-headline context symbol, never predicted
BASE = 128  # every symbol (0..118) is one digit below BASE
# A sanity bound, not an encoding limit: each order adds its tables (~tens of bytes per
# training character) and one pad per headline.
MAX_SUPPORTED_ORDER = 32


@dataclass
class _Table:
    """Counts of one order (raw or adjusted) and the per-context sums derived from them."""

    keys: np.ndarray  # sorted unique n-gram keys (context id * BASE + symbol)
    counts: np.ndarray  # a_k of each key (float64)
    discounts: np.ndarray  # [0, D1, D2, D3+]: indexed by min(count, 3)
    ctx_total: np.ndarray  # sum of counts, indexed by context id (0: context never seen)
    ctx_gamma: np.ndarray  # discounted mass (D1 N1 + D2 N2 + D3 N3+), indexed by context id


def _discounts(counts: np.ndarray, modified: bool) -> np.ndarray:
    """Chen & Goodman's closed-form discounts from the count-of-counts n1..n4.

    Tiny corpora can leave some n_i at zero; then the estimate is undefined or outside its
    valid range, so defaults are used and every D_i is clipped into (0, i).
    """
    n = [0] + [int(np.count_nonzero(counts == i)) for i in range(1, 5)]  # n[i] = n_i
    y = n[1] / (n[1] + 2 * n[2]) if n[1] + 2 * n[2] > 0 else 0.5
    if not modified:
        return np.array([0.0] + [min(max(y, 0.05), 0.95)] * 3)
    out = [0.0]
    for i, default in ((1, 0.5), (2, 1.0), (3, 1.5)):
        value = i - (i + 1) * y * n[i + 1] / n[i] if n[i] > 0 else default
        out.append(value if 0.05 <= value <= i - 0.05 else default)
    return np.array(out)


def _lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `queries` in `sorted_keys` and whether each was found."""
    pos = np.searchsorted(sorted_keys, queries)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == queries


def encode_padded(texts: Sequence[str], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate headlines as symbol indices, each preceded by `pad` PAD symbols and
    followed by the end marker; return the sequence and the indices of predicted symbols.
    """
    joined = "".join("\0" * pad + text + "\n" for text in texts)
    if not joined.isascii():
        bad = next(c for c in joined if not c.isascii())
        raise ValueError(f"character {bad!r} is outside ASCII 10..127")
    raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).astype(np.int64)
    if any("\n" in text or "\0" in text for text in texts) or np.any((raw > 0) & (raw < 10)):
        raise ValueError("headlines must not contain newlines or ASCII control chars below 10")
    seq = np.where(raw == 0, PAD, raw - 10)
    return seq, np.flatnonzero(raw != 0)


def _table(
    keys: np.ndarray,
    counts: np.ndarray,
    modified: bool,
    groups: tuple[np.ndarray, np.ndarray],
    n_contexts: int,
) -> _Table:
    """Table of one order; `groups` = (context ids, index of each one's first key)."""
    counts = counts.astype(np.float64)
    discounts = _discounts(counts, modified)
    contexts, starts = groups
    ctx_total = np.zeros(n_contexts)
    ctx_total[contexts] = np.add.reduceat(counts, starts)
    ctx_gamma = np.zeros(n_contexts)
    ctx_gamma[contexts] = np.add.reduceat(discounts[np.minimum(counts, 3).astype(np.int64)], starts)
    return _Table(keys, counts, discounts, ctx_total, ctx_gamma)


class KneserNeyLM:
    """Interpolated Kneser-Ney character model of headlines, orders 1..max_order."""

    def __init__(self, max_order: int = 8, *, modified: bool = True) -> None:
        if not 1 <= max_order <= MAX_SUPPORTED_ORDER:
            raise ValueError(f"max_order must be in 1..{MAX_SUPPORTED_ORDER}, got {max_order}")
        self.max_order = max_order
        self.modified = modified
        self._raw: list[_Table] = []
        self._adjusted: list[_Table] = []
        # Id of the all-pad k-gram at index k - 1: PAD for k = 1, else one past the last rank.
        self._pad_ids: list[int] = []

    def fit(self, texts: Sequence[str]) -> KneserNeyLM:
        """Count every n-gram of the training headlines (end markers included)."""
        seq, positions = encode_padded(texts, self.max_order - 1)
        if len(positions) == 0:
            raise ValueError("cannot fit on an empty corpus")
        self._raw, self._adjusted, self._pad_ids = [], [], []
        ids = seq  # id of the (k-1)-gram ending at each index of seq (order 1: the symbol)
        lower = None  # (rank per position, raw counts, context groups) of the (k-1)-grams
        for k in range(1, self.max_order + 1):
            if k == 1:
                keys, n_contexts = seq[positions], 1
            else:
                keys, n_contexts = ids[positions - 1] * BASE + seq[positions], self._pad_ids[-1] + 1
            ukeys, rank, raw = np.unique(keys, return_inverse=True, return_counts=True)
            del keys
            rank = rank.reshape(-1)  # dense id of the k-gram ending at each position
            groups = np.unique(ukeys // BASE, return_index=True)  # keys sorted => grouped
            self._raw.append(_table(ukeys, raw, self.modified, groups, n_contexts))
            if lower is not None:
                # Continuation count of a (k-1)-gram: the number of distinct k-grams that
                # end with it (its suffix = the (k-1)-gram ending at the same position).
                # Every (k-1)-gram has one: headlines carry max_order - 1 PADs.
                lower_rank, lower_raw, lower_groups = lower
                suffix = np.empty(len(ukeys), dtype=np.int64)
                suffix[rank] = lower_rank
                cont = np.bincount(suffix, minlength=len(lower_raw))
                assert len(cont) == len(lower_raw) and cont.min() > 0
                starts_with_pad = np.zeros(len(lower_raw), dtype=bool)
                starts_with_pad[lower_rank] = seq[positions - (k - 2)] == PAD
                lower_table = self._raw[k - 2]
                self._adjusted.append(
                    _table(
                        lower_table.keys,
                        np.where(starts_with_pad, lower_raw, cont),
                        self.modified,
                        lower_groups,
                        len(lower_table.ctx_total),
                    )
                )
            self._pad_ids.append(PAD if k == 1 else len(ukeys))
            if k < self.max_order:
                if k > 1:  # order-1 ids stay the symbols
                    ids = np.full(len(seq), self._pad_ids[-1], dtype=np.int64)  # PADs: all-pad
                    ids[positions] = rank
                lower = rank, raw, groups
        # The highest order is never used as a lower order; keep the list aligned with orders.
        self._adjusted.append(self._raw[-1])
        return self

    def _check_order(self, order: int | None) -> int:
        if not self._raw:
            raise RuntimeError("fit the model first")
        order = self.max_order if order is None else order
        if not 1 <= order <= self.max_order:
            raise ValueError(f"order must be in 1..{self.max_order}, got {order}")
        return order

    def _keys(self, seq: np.ndarray, positions: np.ndarray, order: int) -> list[np.ndarray]:
        """Keys of the 1..order-grams ending at each position, in the training ids (-1: an
        n-gram whose context was never seen in training).

        Ids are looked up at every index of `seq`, one order at a time; an index holding PAD
        gets the all-pad id (the n-grams read at `positions` never reach past their PADs).
        """
        keys = [seq[positions]]
        ids = seq
        is_pad = seq == PAD
        for k in range(2, order + 1):
            context = ids[positions - 1]
            keys.append(np.where(context >= 0, context * BASE + seq[positions], -1))
            if k < order:  # ids of the k-grams ending at every index, for the next order
                context = np.concatenate([[-1], ids[:-1]])
                table_keys = self._raw[k - 1].keys
                pos, found = _lookup(table_keys, np.where(context >= 0, context * BASE + seq, -1))
                ids = np.where(found, pos, np.where(is_pad, self._pad_ids[k - 1], -1))
        return keys

    def _probs(self, keys: list[np.ndarray], order: int) -> np.ndarray:
        """P(target) for each row, given the keys of its 1..order-grams."""
        p = np.full(len(keys[0]), 1.0 / VOCAB_SIZE)
        for k in range(1, order + 1):
            table = self._raw[k - 1] if k == order else self._adjusted[k - 1]
            context = keys[k - 1] // BASE  # -1 where the context is unseen
            ctx = np.maximum(context, 0)
            total = table.ctx_total[ctx]
            ctx_found = (context >= 0) & (total > 0)
            pos, found = _lookup(table.keys, keys[k - 1])
            count = np.where(found, table.counts[pos], 0.0)
            discount = table.discounts[np.minimum(count, 3).astype(np.int64)]
            interpolated = (
                np.maximum(count - discount, 0.0) + table.ctx_gamma[ctx] * p
            ) / np.where(ctx_found, total, 1.0)
            p = np.where(ctx_found, interpolated, p)
        return p

    def log2_probs(self, texts: Sequence[str], order: int | None = None) -> np.ndarray:
        """log2 P of every character of every headline, end markers included, in order."""
        order = self._check_order(order)
        seq, positions = encode_padded(texts, order - 1)
        return np.log2(self._probs(self._keys(seq, positions, order), order))

    def bits_per_char(self, texts: Sequence[str], order: int | None = None) -> float:
        """Mean -log2 P per character, counting each headline's end marker as a character."""
        return float(-self.log2_probs(texts, order).mean())

    def next_char_probs(self, prefix: str, order: int | None = None) -> np.ndarray:
        """Distribution (118,) of the character after a headline prefix; entry i is chr(i+10)."""
        order = self._check_order(order)
        seq, _ = encode_padded([prefix], order - 1)
        context = seq[:-1][len(seq) - order :]  # last order-1 symbols, end marker dropped
        windows = np.concatenate(
            [np.tile(context, (VOCAB_SIZE, 1)), np.arange(VOCAB_SIZE)[:, None]], axis=1
        )
        flat = windows.reshape(-1)
        targets = np.arange(VOCAB_SIZE) * order + order - 1  # target column of each row
        return self._probs(self._keys(flat, targets, order), order)


def tune_order(
    model: KneserNeyLM, validation: Sequence[str], orders: Sequence[int] | None = None
) -> tuple[int, dict[int, float]]:
    """Order with the lowest validation bits per char, and the score of every order tried."""
    orders = list(orders) if orders is not None else list(range(1, model.max_order + 1))
    scores = {order: model.bits_per_char(validation, order) for order in orders}
    return min(scores, key=scores.__getitem__), scores


def main(argv: Sequence[str] | None = None) -> None:
    """Fit on the train split, tune the order on validation, report test bits per char."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--max-order", type=int, default=12)
    parser.add_argument("--min-order", type=int, default=2)
    parser.add_argument("--absolute", action="store_true", help="one discount per order")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    splits = split_headlines(load_headlines(args.csv))
    sizes = ", ".join(f"{name} {len(texts)}" for name, texts in splits.items())
    print(f"{args.csv}: {sizes} headlines")
    model = KneserNeyLM(args.max_order, modified=not args.absolute).fit(splits["train"])
    print(f"fit orders 1..{args.max_order} in {time.perf_counter() - start:.1f}s")
    best, scores = tune_order(
        model, splits["validation"], range(args.min_order, args.max_order + 1)
    )
    for order, bpc in scores.items():
        print(f"order {order}: validation {bpc:.4f} bits/char")
    test_bpc = model.bits_per_char(splits["test"], best)
    print(
        f"chosen order {best}: test {test_bpc:.4f} bits/char "
        f"(perplexity {math.pow(2, test_bpc):.3f}); total {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    main()
