"""The blog article's deep GRU/LSTM character model, re-implemented as a speed baseline.

One of the two deliberate copies of the article's equations (the other is the numpy oracle
in benchmarks/article_numpy.py, which the tests check this one against).

This deliberately keeps the article's slow design, because it is what charlm's speed-ups
are measured against: eager TensorFlow (no tf.function), float64, one-hot inputs, a Python
loop over time steps, batches sorted by length whose rows drop out as their headlines end,
a per-step loss of batch-mean cross entropy averaged over time steps, Adam at its default
learning rate, and sampling one headline at a time with the article's threshold rule.

Departures, all for benchmarking or hygiene and none changing the maths:

* ``fit`` takes ``max_batches`` / ``time_limit_s`` and returns timing statistics;
* ``sample`` / ``predict_next`` take ``max_length`` so an untrained model terminates;
* randomness comes from an explicit ``np.random.Generator`` (weights are drawn with
  ``tf.random.stateless_normal`` seeded from it), and ``fit`` shuffles a copy of the list;
* ``load`` is a classmethod that reads the vocabulary byte-exactly (the article's reads
  '\\r' back as '\\n').

``next_char_probs`` (numpy) lives in ``benchmarks.article_numpy`` and is re-exported; the
save format is read by ``charlm.article.read_article``, its one reader.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

from benchmarks.article_numpy import next_char_probs  # noqa: E402
from benchmarks.common import END_CHAR, VOCABULARY  # noqa: E402
from charlm import article  # noqa: E402

__all__ = ["ArticleModel", "FitStats", "next_char_probs", "threshold_filter"]


def threshold_filter(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The article's sampling rule: keep the most likely symbols until their mass exceeds
    `threshold`, zero the rest, renormalise.

    Returns ``(order, p)``: vocabulary indices sorted by decreasing probability (stable, as
    Python's ``sort(reverse=True)``) and the renormalised probabilities in that order. A
    symbol is kept iff the mass of the symbols before it is still <= threshold, so the one
    that crosses the threshold is kept too.
    """
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    # Stable descending order: stable ascending sort of the negation.
    order = np.argsort(-prob, kind="stable")
    sorted_p = prob[order]
    before = np.concatenate([[0.0], np.cumsum(sorted_p)[:-1]])
    kept = np.where(before > threshold, 0.0, sorted_p)
    return order, kept / kept.sum()


@dataclass
class FitStats:
    """What one `fit` call did; `chars` counts predicted characters, end markers included."""

    batches: int = 0
    time_steps: int = 0
    chars: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    losses: list[float] = field(default_factory=list)  # article loss of each batch

    @property
    def chars_per_second(self) -> float:
        return self.chars / self.seconds if self.seconds > 0 else float("nan")


class ArticleModel:
    """Deep GRU/LSTM character language model, following the article equation for equation."""

    def __init__(self, vocabulary: Sequence[str] = VOCABULARY, inter_time_step_size: int = 512,
                 unit_type: str = "lstm", depth: int = 1, *,
                 rng: np.random.Generator | None = None) -> None:
        self._setup(list(vocabulary), inter_time_step_size, unit_type, depth, rng)
        # Draw order mirrors the article: all W of each kind, then all b, then W_y, b_y.
        names = article.GATES[unit_type]
        for name in [n for n in names if n.startswith("w")]:
            setattr(self, name, [self._normal(s, sd) for s, sd in self._w_shapes])
        for name in [n for n in names if n.startswith("b")]:
            setattr(self, name, [self._normal(s, sd) for s, sd in self._b_shapes])
        n_a, n_v = self.inter_time_step_size, self.vocab_size
        self.wy = self._normal((n_a, n_v), math.sqrt(2.0 / (n_a + n_v)))
        self.by = self._normal((1, n_v), math.sqrt(2.0 / (1 + n_v)))
        self._collect_weights()

    def _setup(self, vocabulary: list[str], inter_time_step_size: int, unit_type: str,
               depth: int, rng: np.random.Generator | None) -> None:
        if unit_type not in article.GATES:
            raise ValueError(f"unit_type must be 'gru' or 'lstm', got {unit_type!r}")
        if depth < 1 or inter_time_step_size < 1:
            raise ValueError("depth and inter_time_step_size must be >= 1")
        if END_CHAR not in vocabulary:
            raise ValueError("the vocabulary must contain the end marker '\\n'")
        self.vocab = vocabulary
        self.vocab_size = len(vocabulary)
        self._index = {char: i for i, char in enumerate(vocabulary)}
        self.inter_time_step_size = inter_time_step_size
        self.unit_type = unit_type
        self.depth = depth
        self.rng = rng if rng is not None else np.random.default_rng(0)
        n_a, n_comb = inter_time_step_size, self.vocab_size + inter_time_step_size
        # The article's Glorot-style standard deviations.
        self._w_shapes = [((n_comb, n_a), math.sqrt(2.0 / (n_comb + n_a)))]
        self._w_shapes += [((2 * n_a, n_a), math.sqrt(2.0 / (3 * n_a)))] * (depth - 1)
        self._b_shapes = [((1, n_a), math.sqrt(2.0 / (1 + n_a)))] * depth
        self.optimizer = tf.keras.optimizers.Adam()  # default learning rate 0.001
        self.reset_state(1)

    def _normal(self, shape: tuple[int, int], stddev: float) -> tf.Variable:
        # Explicit stateless seed drawn from the generator: reproducible, no global TF seed.
        seed = self.rng.integers(0, 2**31 - 1, size=2)
        return tf.Variable(
            tf.random.stateless_normal(shape, seed=seed, stddev=stddev, dtype=tf.float64)
        )

    def _collect_weights(self) -> None:
        self.weights: list[tf.Variable] = []
        for name in article.GATES[self.unit_type]:
            self.weights.extend(getattr(self, name))
        self.weights.extend([self.wy, self.by])

    # ----------------------------------------------------------------------------- forward

    def reset_state(self, num_samples: int) -> None:
        """Zero the per-level state for a batch of `num_samples` sequences."""
        shape = (num_samples, self.inter_time_step_size)
        self.a = [tf.zeros(shape, dtype=tf.float64) for _ in range(self.depth)]
        self.c = [tf.zeros(shape, dtype=tf.float64) for _ in range(self.depth)]

    def onehot(self, chars: Sequence[str]) -> np.ndarray:
        """One-hot rows (float64) for a list of characters."""
        try:
            indices = [self._index[char] for char in chars]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary") from None
        out = np.zeros((len(indices), self.vocab_size))
        out[np.arange(len(indices)), indices] = 1.0
        return out

    def __call__(self, x: np.ndarray | tf.Tensor, y: np.ndarray | tf.Tensor | None = None):
        """One time step for the first ``len(x)`` rows of the state.

        Returns softmax probabilities, or with one-hot targets `y` the batch-mean cross
        entropy of this step (the article's per-step loss).
        """
        h = x
        for level in range(self.depth):
            h = self._gru(level, h) if self.unit_type == "gru" else self._lstm(level, h)
        logits = tf.linalg.matmul(h, self.wy) + self.by
        if y is None:
            return tf.nn.softmax(logits)
        return tf.math.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, logits))

    def _gru(self, level: int, x: np.ndarray | tf.Tensor) -> tf.Tensor:
        n = x.shape[0]
        a_prev = self.a[level][0:n]  # rows whose headline has ended drop out (sorted batch)
        concat = tf.concat([a_prev, x], axis=1)
        r = tf.math.sigmoid(tf.linalg.matmul(concat, self.wr[level]) + self.br[level])
        u = tf.math.sigmoid(tf.linalg.matmul(concat, self.wu[level]) + self.bu[level])
        cand = tf.math.tanh(
            tf.linalg.matmul(tf.concat([r * a_prev, x], axis=1), self.wa[level]) + self.ba[level]
        )
        self.a[level] = u * cand + (1.0 - u) * a_prev
        return self.a[level]

    def _lstm(self, level: int, x: np.ndarray | tf.Tensor) -> tf.Tensor:
        n = x.shape[0]
        a_prev, c_prev = self.a[level][0:n], self.c[level][0:n]
        concat = tf.concat([a_prev, x], axis=1)
        u = tf.math.sigmoid(tf.linalg.matmul(concat, self.wu[level]) + self.bu[level])
        f = tf.math.sigmoid(tf.linalg.matmul(concat, self.wf[level]) + self.bf[level])
        o = tf.math.sigmoid(tf.linalg.matmul(concat, self.wo[level]) + self.bo[level])
        cand = tf.math.tanh(tf.linalg.matmul(concat, self.wc[level]) + self.bc[level])
        self.c[level] = u * cand + f * c_prev
        self.a[level] = o * tf.math.tanh(self.c[level])
        return self.a[level]

    def next_char_probs(self, text: str) -> np.ndarray:
        """Eager forward pass: P(next char) after the zeros start input and each char of `text`."""
        self.reset_state(1)
        y_hat = self(np.zeros((1, self.vocab_size)))
        for char in text:
            y_hat = self(self.onehot([char]))
        return tf.reshape(y_hat, (-1,)).numpy()

    # ---------------------------------------------------------------------------- training

    def _step_targets(self, batch: list[str], t: int) -> list[str]:
        # Targets at step t for the rows still running: their char t, or the end at t == len.
        # The batch is sorted longest first, so the running rows are a prefix.
        chars = []
        for sentence in batch:
            if t > len(sentence):
                break
            chars.append(sentence[t] if t < len(sentence) else END_CHAR)
        return chars

    def fit(self, sentences: Sequence[str], batch_size: int = 128, epochs: int = 10, *,
            max_batches: int | None = None, time_limit_s: float | None = None,
            rng: np.random.Generator | None = None) -> FitStats:
        """Train as the article does; stop early after `max_batches` or `time_limit_s`.

        The limits are checked between batches, so one batch always completes.
        """
        rng = rng if rng is not None else self.rng
        sentences = list(sentences)  # the article shuffles the caller's list in place
        stats = FitStats()
        start_time = time.perf_counter()
        for _ in range(epochs):
            rng.shuffle(sentences)
            for start in range(0, len(sentences), batch_size):
                elapsed = time.perf_counter() - start_time
                if (max_batches is not None and stats.batches >= max_batches) or (
                    time_limit_s is not None and elapsed >= time_limit_s
                ):
                    stats.stopped_early = True
                    stats.seconds = elapsed
                    return stats
                batch = sorted(sentences[start : start + batch_size], key=len, reverse=True)
                self.reset_state(len(batch))
                x = np.zeros((len(batch), self.vocab_size))
                with tf.GradientTape() as tape:
                    losses = []
                    for t in range(len(batch[0]) + 1):
                        y = self.onehot(self._step_targets(batch, t))
                        n = y.shape[0]
                        losses.append(self(x[0:n], y))
                        x = y
                        stats.chars += n
                    loss = tf.math.reduce_mean(losses)
                grads = tape.gradient(loss, self.weights)
                self.optimizer.apply_gradients(zip(grads, self.weights, strict=True))
                stats.batches += 1
                stats.time_steps += len(batch[0]) + 1
                stats.losses.append(float(loss))
        stats.seconds = time.perf_counter() - start_time
        return stats

    def bits_per_char(self, sentences: Sequence[str], batch_size: int = 256) -> float:
        """Mean -log2 P over every character of `sentences`, end markers included."""
        total, count = 0.0, 0
        for start in range(0, len(sentences), batch_size):
            batch = sorted(sentences[start : start + batch_size], key=len, reverse=True)
            self.reset_state(len(batch))
            x = np.zeros((len(batch), self.vocab_size))
            for t in range(len(batch[0]) + 1):
                y = self.onehot(self._step_targets(batch, t))
                n = y.shape[0]
                probs = self(x[0:n]).numpy()
                total -= float(np.log2((probs * y).sum(axis=1)).sum())
                count += n
                x = y
        return total / count

    # ---------------------------------------------------------------------------- sampling

    def _sample_char(self, y_hat: tf.Tensor, threshold: float, rng: np.random.Generator) -> str:
        order, p = threshold_filter(tf.reshape(y_hat, (-1,)).numpy(), threshold)
        return self.vocab[int(order[rng.choice(len(order), p=p)])]

    def _continue(
        self, y_hat: tf.Tensor, threshold: float, max_length: int | None, rng: np.random.Generator
    ) -> str:
        out = ""
        while max_length is None or len(out) < max_length:
            char = self._sample_char(y_hat, threshold, rng)
            if char == END_CHAR:
                break
            out += char
            y_hat = self(self.onehot([char]))
        return out

    def sample(self, threshold: float = 0.9, *, max_length: int | None = 500,
               rng: np.random.Generator | None = None) -> str:
        """Sample one headline (without its end marker), one character per eager step."""
        self.reset_state(1)
        y_hat = self(np.zeros((1, self.vocab_size)))
        return self._continue(y_hat, threshold, max_length, rng if rng is not None else self.rng)

    def predict_next(self, sentence: str, threshold: float = 0.9, *, max_length: int | None = 500,
                     feed_start: bool = False, rng: np.random.Generator | None = None) -> str:
        """Sample a continuation of ``sentence.strip()``.

        Like the article, the prompt is fed without the all-zeros start input unless
        `feed_start` is true (the start input is always fed for an empty prompt, where the
        article would fail).
        """
        prompt = sentence.strip()
        self.reset_state(1)
        y_hat = None
        if feed_start or not prompt:
            y_hat = self(np.zeros((1, self.vocab_size)))
        for char in prompt:
            y_hat = self(self.onehot([char]))
        return self._continue(y_hat, threshold, max_length, rng if rng is not None else self.rng)

    # ------------------------------------------------------------------------- persistence

    def save(self, model_dir: str | Path) -> Path:
        """Write the article's directory format exactly (see `charlm.article`)."""
        model_dir = Path(model_dir)
        weights = model_dir / article.WEIGHTS_DIR
        weights.mkdir(parents=True, exist_ok=True)
        texts = {
            article.VOCABULARY_FILE: article.SEPARATOR.join(self.vocab),
            article.SIZE_FILE: str(self.inter_time_step_size),
            article.CELL_FILE: self.unit_type,
            article.DEPTH_FILE: str(self.depth),
        }
        for name, content in texts.items():
            # newline="" so '\r' and '\n' in the vocabulary are written as themselves.
            with open(model_dir / name, "w", encoding="utf-8", newline="") as handle:
                handle.write(content)
        for name in article.GATES[self.unit_type]:
            for level, variable in enumerate(getattr(self, name)):
                np.save(weights / f"{name}_{level}.npy", variable.numpy())
        np.save(weights / "wy.npy", self.wy.numpy())
        np.save(weights / "by.npy", self.by.numpy())
        return model_dir

    @classmethod
    def load(cls, model_dir: str | Path, *, rng: np.random.Generator | None = None) -> ArticleModel:
        """Rebuild a model (fresh optimizer state) from a directory written by `save`."""
        saved = article.read_article(Path(model_dir))
        model = cls.__new__(cls)
        model._setup(saved.vocabulary, saved.hidden, saved.cell, saved.depth, rng)
        for name in article.GATES[saved.cell]:
            setattr(model, name, [tf.Variable(level[name]) for level in saved.levels])
        model.wy, model.by = tf.Variable(saved.wy), tf.Variable(saved.by)
        model._collect_weights()
        return model


def main(argv: Sequence[str] | None = None) -> None:
    """Time a few training batches of the baseline on real headlines and print chars/s."""
    from benchmarks.common import DEFAULT_CSV, load_headlines, split_headlines

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--unit", choices=["gru", "lstm"], default="lstm")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-batches", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train = split_headlines(load_headlines(args.csv))["train"]
    rng = np.random.default_rng(args.seed)
    model = ArticleModel(VOCABULARY, args.hidden, args.unit, args.depth, rng=rng)
    stats = model.fit(
        train,
        args.batch_size,
        epochs=1,
        max_batches=args.max_batches,
        time_limit_s=args.time_limit,
    )
    print(
        f"{args.unit} hidden={args.hidden} depth={args.depth} batch={args.batch_size}: "
        f"{stats.batches} batches, {stats.chars} chars in {stats.seconds:.1f}s "
        f"= {stats.chars_per_second:.0f} chars/s; losses {[round(v, 3) for v in stats.losses]}"
    )
    start = time.perf_counter()
    sample = model.sample(max_length=100)
    print(f"sample ({time.perf_counter() - start:.2f}s): {sample!r}")


if __name__ == "__main__":
    main()
