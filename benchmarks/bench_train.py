"""Benchmark: training characters/second, charlm.train.fit vs the article baseline, side by side.

Both implementations train the same architecture on the same headlines (the train split of
the shared ABC-news CSV, trimmed to a whole number of batches) in ONE process, in
interleaved rounds (charlm first in even rounds, the article first in odd ones), so that
machine load hits both alike. Reported per case: characters/second of each, the ratio
charlm / article, achieved FLOP/s and its fraction of this machine's matmul peak.

charlm runs its real training path: ``charlm.model.build_model(ModelConfig(cell, hidden,
depth, embedding=0 (one-hot input, as the article) unless --embedding, dropout=0),
precision=--precision (default "auto", what `charlm train` uses: mixed_bfloat16 on CPUs with
bfloat16 instructions, float32 on other CPUs))`` and
``charlm.train.fit(..., TrainConfig(batch_size, epochs=1))``. Every ``fit`` call builds a
fresh ``tf.function``, and its first batches trace it (once for the first shape, once more
for the generalised shape under ``reduce_retracing=True``), so the first ``--warmup``
batches (default 2) of each call are excluded: timing runs from the end of batch
``warmup`` to the end of the last batch, through a ``charlm.train.Callback``; the callback
stops the fit (by raising) once ``--seconds`` have been measured. Characters are counted
by re-deriving each batch's rows with ``charlm.data.batch_rows`` and fit's own seed rule;
when a fit runs to the end of its epoch the total is checked against
``TrainResult.characters``.

The article baseline (``benchmarks.article_baseline.ArticleModel``: eager TF, float64,
one-hot, a Python loop over time steps) runs ``fit(..., time_limit_s=--seconds)``: whole
batches until the limit. One tiny batch warms its eager kernels up before the rounds.

Characters are predicted symbols: every headline character plus its end marker.

FLOPs per predicted character (matmuls only; gates/softmax elementwise work ignored):
    forward  = sum over layers l of 2 * (in_l + H) * G * H   +   2 * H * 118
    where G = 4 (LSTM), 3 (GRU), 1 (simple RNN); in_1 = 118 for one-hot input (the
    article's and charlm's embedding=0) or the embedding width; in_l = H for l > 1;
    training = 3 * forward   (backward ~ 2x forward: a gradient for inputs and weights).
Only real characters count: charlm's padding positions are computed but not credited.
The peak is the best of timed loops of a 2048x2048 tf.matmul (charlm's compute dtype:
float32, or bfloat16 / float16 under a mixed policy; float64 for the article) in the same
process, measured before and after the rounds.

    .venv/bin/python -m benchmarks.bench_train            # full: the two target cases
    .venv/bin/python -m benchmarks.bench_train --quick    # a few seconds per measurement
    .venv/bin/python -m benchmarks.bench_train --tiny     # smoke test: tiny model

Targets (2-core CPU): charlm >= 10x the article at lstm 128x2 batch 128, >= 4x at the
article's own lstm 512x3 batch 1024.

This module also holds the helpers the other speed benchmarks share (machine info,
matmul peak, verdict lines).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the tables readable

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import DEFAULT_CSV, load_headlines, split_headlines  # noqa: E402

VOCAB = 118  # output classes (ASCII 10..127)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MODES = ("full", "quick", "tiny")
SHORT = {"float32": "f32", "mixed_bfloat16": "bf16", "mixed_float16": "f16"}


# -- shared helpers ---------------------------------------------------------------------------


@dataclass
class Verdict:
    """One target line: `value` (a ratio or a size) against `target`."""

    benchmark: str
    metric: str
    value: float
    target: float
    higher_is_better: bool = True
    unit: str = "x"

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.value):
            return False
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return (f"{self.benchmark}: {self.metric} = {self.value:.2f}{self.unit} "
                f"(target {op} {self.target:g}{self.unit}): {'PASS' if self.passed else 'MISS'}")


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    import keras

    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return {
        "cpu": cpu,
        "cpu_count": f"{os.cpu_count()} (usable {usable})",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "gpu": ", ".join(d.name for d in tf.config.list_physical_devices("GPU")) or "none",
        "tf threads": (f"intra {tf.config.threading.get_intra_op_parallelism_threads()} "
                       f"inter {tf.config.threading.get_inter_op_parallelism_threads()} "
                       "(0 = TF default)"),
        "load average": load,
    }


def print_header(title: str, mode: str) -> None:
    print(f"== {title} [{mode} mode] ==")
    for key, value in machine_info().items():
        print(f"  {key:<13} {value}")
    if mode == "tiny":
        print("  NOTE: tiny mode is a smoke test; its ratios say nothing about the targets.")


def matmul_flops(dtype: tf.DType, n: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of a timed loop of n x n tf.matmul in `dtype` (2 n^3 per product)."""
    a = tf.random.stateless_normal((n, n), seed=(1, 2), dtype=dtype)
    b = tf.random.stateless_normal((n, n), seed=(3, 4), dtype=dtype)
    c = tf.matmul(a, b)  # warm-up
    float(c[0, 0])
    count, start = 0, time.perf_counter()
    while True:
        c = tf.matmul(a, b)
        float(c[0, 0])  # CPU eager ops are synchronous; this makes sure of it
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= 2:
            return 2.0 * n**3 * count / elapsed


def forward_flops_per_char(cell: str, input_size: int, hidden: int, depth: int) -> float:
    """Matmul FLOPs of one forward time step (see the module docstring)."""
    total = 0.0
    for level in range(depth):
        width = input_size if level == 0 else hidden
        total += 2.0 * (width + hidden) * GATES[cell] * hidden
    return total + 2.0 * hidden * VOCAB


def train_flops_per_char(cell: str, input_size: int, hidden: int, depth: int) -> float:
    return 3.0 * forward_flops_per_char(cell, input_size, hidden, depth)


def load_train_texts(csv: Path, max_length: int = 256) -> list[str]:
    """The train split of `csv`, keeping only headlines both implementations accept."""
    texts = split_headlines(load_headlines(csv))["train"]
    kept = [t for t in texts if t.isascii() and len(t) <= max_length
            and all(10 < ord(ch) < 128 for ch in t)]
    if len(kept) < len(texts):
        print(f"  dropped {len(texts) - len(kept)} headlines outside the alphabet / too long")
    return kept


def tiny_texts(count: int = 400) -> list[str]:
    """Deterministic synthetic headlines for tiny mode when the shared CSV is missing."""
    words = ("police council water govt court fire man plan health rain new to in for "
             "of on over says calls set back crash farmers storm").split()
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, int(rng.integers(3, 9)))) for _ in range(count)]


def headline_source(csv: Path, mode: str) -> list[str]:
    if csv.exists():
        return load_train_texts(csv)
    if mode != "tiny":
        raise SystemExit(f"{csv} not found (pass --csv); only --tiny runs without it")
    print(f"  {csv} not found: synthetic headlines (tiny mode)")
    return tiny_texts()


# -- the benchmark ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    cell: str
    hidden: int
    depth: int
    batch: int
    target: float  # charlm / article characters per second

    def label(self) -> str:
        return f"{self.cell} {self.hidden}x{self.depth} batch {self.batch}"


CASES = {
    "small": Case("small", "lstm", 128, 2, 128, 10.0),
    "article": Case("article", "lstm", 512, 3, 1024, 4.0),
}
TINY_CASE = Case("tiny", "lstm", 16, 1, 16, 10.0)
MODE_DEFAULTS = {  # rounds, seconds per implementation per round, cases
    "full": (3, 40.0, ("small", "article")),
    "quick": (1, 6.0, ("small", "article")),
    "tiny": (1, 0.3, ("tiny",)),
}


@dataclass
class Side:
    """Accumulated measurement of one implementation in one case."""

    chars: int = 0
    cells: int = 0  # padded (batch x time) positions computed (charlm only)
    seconds: float = 0.0
    batches: int = 0
    per_round: list[float] = field(default_factory=list)  # chars/s of each round

    def add(self, chars: int, seconds: float, batches: int, cells: int = 0) -> None:
        self.chars += chars
        self.cells += cells
        self.seconds += seconds
        self.batches += batches
        self.per_round.append(chars / seconds if seconds > 0 else float("nan"))

    @property
    def rate(self) -> float:
        return self.chars / self.seconds if self.seconds > 0 else float("nan")


class _Enough(Exception):
    """Raised by the timing callback to end a charlm fit once enough has been measured."""


def _charlm_round(model, corpus, validation, case: Case, seconds: float, warmup: int,
                  max_length: int) -> tuple[int, float, int, int]:
    """One charlm.train.fit call; returns (chars, seconds, batches, padded cells) measured."""
    from charlm.config import TrainConfig
    from charlm.data import PAD_MULTIPLE, batch_rows
    from charlm.train import Callback, fit

    config = TrainConfig(batch_size=case.batch, epochs=1, truncate_length=max_length,
                         max_minutes=max(1.0, 20 * (seconds + 60) / 60), validation_limit=0)
    # fit draws epoch e's batches from default_rng([seed, e]); re-derive them to count.
    rows = batch_rows(corpus, case.batch, np.random.default_rng([config.seed, 0]))
    lengths = corpus.lengths
    batch_chars, batch_cells = [], []
    for r in rows:
        n = lengths[r]
        cut = np.minimum(n, max_length)
        batch_chars.append(int(cut.sum() + (n <= max_length).sum()))
        steps = -(-(int(cut.max()) + 1) // PAD_MULTIPLE) * PAD_MULTIPLE
        batch_cells.append(len(r) * steps)

    class Timer(Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.indices: list[int] = []

        def on_batch_end(self, step, logs) -> None:
            self.ends.append(time.perf_counter())
            assert logs["epoch"] == 1 and logs["batches"] == len(rows), "fit's batching changed"
            self.indices.append(logs["batch"] - 1)
            measured = len(self.ends) - warmup
            if measured >= 1 and self.ends[-1] - self.ends[warmup - 1] >= seconds:
                raise _Enough

    timer = Timer()
    try:
        result = fit(model, corpus, validation, config, callbacks=[timer])
    except _Enough:
        pass
    else:  # the epoch ended before the budget: check our character count against fit's
        counted = sum(batch_chars[i] for i in timer.indices)
        if counted != result.characters:
            raise RuntimeError(f"character count mismatch: benchmark {counted}, "
                               f"fit {result.characters}; charlm.train's batching changed")
    if len(timer.ends) <= warmup:
        raise SystemExit(f"only {len(timer.ends)} charlm batches ran, none after the {warmup} "
                         "warm-up batches: use a smaller case or more training headlines")
    measured = timer.indices[warmup:]
    return (sum(batch_chars[i] for i in measured), timer.ends[-1] - timer.ends[warmup - 1],
            len(measured), sum(batch_cells[i] for i in measured))


def run(mode: str = "full", *, cases: Sequence[str] | None = None, rounds: int | None = None,
        seconds: float | None = None, warmup: int = 2, embedding: int = 0,
        precision: str = "auto", csv: Path = DEFAULT_CSV, seed: int = 0) -> list[Verdict]:
    """Run the training benchmark, print its table, return the verdicts."""
    from benchmarks.article_baseline import ArticleModel
    from benchmarks.common import VOCABULARY
    from charlm.config import ModelConfig
    from charlm.data import Corpus
    from charlm.model import build_model, resolve_precision

    if warmup < 1:
        raise ValueError("warmup must be >= 1 batch (the first batch always traces)")
    default_rounds, default_seconds, default_cases = MODE_DEFAULTS[mode]
    rounds = rounds or default_rounds
    seconds = seconds or default_seconds
    chosen = [TINY_CASE] if mode == "tiny" and not cases else [
        CASES[name] for name in (cases or default_cases)]
    print_header("training throughput: charlm.train.fit vs the article baseline", mode)
    print(f"  rounds {rounds}, ~{seconds:g} s measured per implementation per round, "
          f"charlm warm-up {warmup} batches per fit call excluded")
    input_label = "one-hot" if embedding == 0 else f"embedding {embedding}"
    policy = resolve_precision(precision)
    compute = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16,
               "mixed_float16": tf.float16}[policy]
    print(f"  charlm input: {input_label}, dropout 0, precision {precision} -> {policy}; "
          "article: one-hot, float64")

    all_texts = headline_source(Path(csv), mode)
    validation = Corpus.from_texts(all_texts[:64])  # fit needs one; never reached here
    peak_seconds = {"full": 2.0, "quick": 1.0, "tiny": 0.05}[mode]
    dtypes = (compute, tf.float64)
    peaks = {dtype: [matmul_flops(dtype, seconds=peak_seconds)] for dtype in dtypes}
    verdicts = []
    results = []
    for case in chosen:
        texts = all_texts[: len(all_texts) - len(all_texts) % case.batch]  # whole batches only
        if len(texts) < case.batch * (warmup + 2):
            texts = (all_texts * math.ceil(case.batch * (warmup + 2) / len(all_texts)))[
                : case.batch * (warmup + 2)]
        corpus = Corpus.from_texts(texts)
        model = build_model(ModelConfig(case.cell, case.hidden, case.depth, embedding=embedding,
                                        dropout=0.0, seed=seed), precision=policy)
        article = ArticleModel(VOCABULARY, case.hidden, case.cell, case.depth,
                               rng=np.random.default_rng(seed))
        article.fit(texts[:4], batch_size=4, epochs=1, max_batches=1)  # eager warm-up
        ours, theirs = Side(), Side()
        for r in range(rounds):
            order = ("charlm", "article") if r % 2 == 0 else ("article", "charlm")
            for impl in order:
                if impl == "charlm":
                    chars, secs, batches, cells = _charlm_round(
                        model, corpus, validation, case, seconds, warmup, 256)
                    ours.add(chars, secs, batches, cells)
                else:
                    stats = article.fit(texts, case.batch, epochs=1, time_limit_s=seconds,
                                        rng=np.random.default_rng([seed, r]))
                    theirs.add(stats.chars, stats.seconds, stats.batches)
            print(f"  {case.name} round {r + 1}/{rounds}: charlm {ours.per_round[-1]:,.0f} "
                  f"chars/s, article {theirs.per_round[-1]:,.0f} chars/s", flush=True)
        results.append((case, ours, theirs))
    for dtype in dtypes:
        peaks[dtype].append(matmul_flops(dtype, seconds=peak_seconds))
    peak32, peak64 = max(peaks[compute]), max(peaks[tf.float64])
    print(f"  matmul peak 2048x2048: {compute.name} {peak32 / 1e9:.1f} GFLOP/s, "
          f"float64 {peak64 / 1e9:.1f} GFLOP/s (best of {len(peaks[tf.float64])})")

    print(f"{'case':<8}{'impl':<9}{'model':<24}{'input':<18}{'batches':>8}{'chars':>11}"
          f"{'seconds':>9}{'chars/s':>10}{'GFLOP/s':>9}{'%peak':>7}{'pad eff':>8}")
    for case, ours, theirs in results:
        in_size = VOCAB if embedding == 0 else embedding
        flops_ours = train_flops_per_char(case.cell, in_size, case.hidden, case.depth)
        flops_theirs = train_flops_per_char(case.cell, VOCAB, case.hidden, case.depth)
        for impl, side, flops, peak, inp in (
                ("charlm", ours, flops_ours, peak32, f"{input_label} {SHORT[policy]}"),
                ("article", theirs, flops_theirs, peak64, "one-hot f64")):
            achieved = side.rate * flops
            pad = f"{side.chars / side.cells:.2f}" if side.cells else "-"
            print(f"{case.name:<8}{impl:<9}{case.label():<24}{inp:<18}{side.batches:>8}"
                  f"{side.chars:>11,}{side.seconds:>9.1f}{side.rate:>10,.0f}"
                  f"{achieved / 1e9:>9.1f}{100 * achieved / peak:>6.0f}%{pad:>8}")
        per_round = [a / b for a, b in zip(ours.per_round, theirs.per_round)]
        ratio = ours.rate / theirs.rate
        print(f"ratio {case.name} ({case.label()}): charlm/article chars/s = {ratio:.1f}x "
              f"(rounds {min(per_round):.1f}x..{max(per_round):.1f}x); "
              f"FLOPs/char train {flops_ours / 1e6:.2f}M (charlm) {flops_theirs / 1e6:.2f}M "
              "(article)")
        verdict = Verdict("train", f"{case.name} {case.label()} chars/s charlm/article",
                          ratio, case.target)
        print(verdict.line())
        verdicts.append(verdict)
    return verdicts


def add_mode_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--mode", choices=MODES, default="full")
    group.add_argument("--quick", dest="mode", action="store_const", const="quick",
                       help="short measurements (development on a busy machine)")
    group.add_argument("--tiny", dest="mode", action="store_const", const="tiny",
                       help="smoke test: tiny models, a fraction of a second each")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_mode_arguments(parser)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES),
                        help="which cases (default: small and article)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per case")
    parser.add_argument("--seconds", type=float,
                        help="seconds measured per implementation per round")
    parser.add_argument("--warmup", type=int, default=2,
                        help="charlm batches excluded at the start of each fit call")
    parser.add_argument("--embedding", type=int, default=0,
                        help="charlm embedding width (0 = one-hot, as the article)")
    parser.add_argument("--precision", default="auto",
                        choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"],
                        help="charlm's dtype policy (auto: as charlm train resolves it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    verdicts = run(args.mode, cases=args.cases, rounds=args.rounds, seconds=args.seconds,
                   warmup=args.warmup, embedding=args.embedding, precision=args.precision,
                   csv=args.csv, seed=args.seed)
    return 1 if args.strict and not all(v.passed for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
