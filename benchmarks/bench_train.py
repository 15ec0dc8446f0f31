"""Benchmark: training speed over whole runs of the real `charlm train` path, vs the article.

What a user gets: charlm runs `tasks.train.train_model` (the function `charlm train` calls)
on a dataset version in a temporary store: reading the dataset, building the model, tracing,
every epoch with its validation pass, checkpoints, TensorBoard logs and publishing the model
all count. Every epoch's time is printed (train and validation apart), with the CPU it got:
this process's share of the machine, other processes' (niced ones apart) and idle time, and
its page faults, so an uneven epoch can be told from a busy machine.

Cases (one-hot input and dropout 0 for charlm, as the article; precision `auto`, which is
mixed_bfloat16 on CPUs with bfloat16 instructions):

* small: lstm 128x2, batch 128, the train split of the shared CSV, 3 epochs. The article
  re-implementation (benchmarks.article_baseline: eager float64, a Python loop over time
  steps) trains whole epochs over its first 4,000 headlines, once before and once after
  charlm's run; target: charlm's whole-run chars/s >= 25x the article's.
* article: lstm 512x3, batch 1024 (the article's own configuration), the first 12,000 rows
  of the CSV, 4 epochs. Targets: steady-state epochs (2..) at >= 65% of this machine's
  bfloat16 matmul peak (measured in the same process, before and after), and no epoch
  more than 10% slower than the median. The article trains 2 batches here for reference.

FLOPs per predicted character (matmuls only): forward = sum over layers of
2 (in + H) G H + 2 H 118 with G = 4 for an LSTM; training = 3 x forward. Only real
characters (end markers included) count, never padding.

    .venv/bin/python -m benchmarks.bench_train            # full (~4 min on 2 cores)
    .venv/bin/python -m benchmarks.bench_train --quick    # shorter runs, rough figures
    .venv/bin/python -m benchmarks.bench_train --tiny     # smoke test
    .venv/bin/python -m benchmarks.bench_train --cases article --epochs 6
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the tables readable

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import DEFAULT_CSV, load_headlines, split_headlines  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    MODES,
    VOCAB,
    MachineLoad,
    Verdict,
    add_mode_arguments,
    matmul_flops,
    print_header,
    tiny_texts,
    train_flops_per_char,
)
from charlm.config import PRECISIONS  # noqa: E402
from charlm.train import Callback  # noqa: E402

__all__ = ["MODES", "Verdict", "add_mode_arguments", "main", "run"]


@dataclass(frozen=True)
class Case:
    name: str
    cell: str
    hidden: int
    depth: int
    batch: int
    rows: int  # CSV rows ingested (0: all)
    epochs: int
    article_headlines: int  # the article trains whole epochs over this many (0: batches)
    article_batches: int  # ... or this many batches

    def label(self) -> str:
        return f"{self.cell} {self.hidden}x{self.depth} batch {self.batch}"


CASES = {
    "small": Case("small", "lstm", 128, 2, 128, 0, 3, 4000, 0),
    "article": Case("article", "lstm", 512, 3, 1024, 12_000, 4, 0, 2),
}
QUICK = {"small": Case("small", "lstm", 128, 2, 128, 12_000, 2, 1500, 0),
         "article": Case("article", "lstm", 512, 3, 1024, 4_000, 3, 0, 1)}
TINY = Case("tiny", "lstm", 16, 1, 16, 300, 2, 40, 0)
RATIO_TARGET = 25.0  # small: charlm whole run / article chars/s
PEAK_TARGET = 0.65  # article: steady epochs' FLOP/s / bf16 matmul peak
EVEN_TARGET = 1.10  # article: slowest epoch / median epoch


class EpochProbe(Callback):
    """Records each epoch's resources (rusage, machine load) beside fit's own figures."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.load = MachineLoad()
        self.usage = resource.getrusage(resource.RUSAGE_SELF)

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.load = MachineLoad()
        self.usage = resource.getrusage(resource.RUSAGE_SELF)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (usage.ru_utime + usage.ru_stime) - (self.usage.ru_utime + self.usage.ru_stime)
        self.rows.append({**logs, **{f"load_{k}": v for k, v in self.load.split().items()},
                          "cores": cpu / max(logs["seconds"], 1e-9),
                          "majflt": usage.ru_majflt - self.usage.ru_majflt,
                          "minflt": usage.ru_minflt - self.usage.ru_minflt})
        self.usage = usage


def _write_csv(texts: Sequence[str], path: Path) -> None:
    import polars as pl

    dates = ["20030219"] * len(texts)
    pl.DataFrame({"publish_date": dates, "headline_text": list(texts)}).write_csv(path)


def _charlm_run(case: Case, texts: list[str], workdir: Path, precision: str,
                embedding: int = 0) -> dict[str, Any]:
    """`tasks.train.train_model` on a fresh store holding `texts`; its figures.

    `embedding` 0 is the article's one-hot input; bench_peer passes its peer's width."""
    from charlm.config import IngestConfig, ModelConfig, TrainConfig
    from tasks.ingest import ingest_csvs
    from tasks.train import train_model

    store = workdir / f"store-{case.name}-{precision}"
    csv = workdir / f"{case.name}-{precision}.csv"
    _write_csv(texts, csv)
    dataset = ingest_csvs.fn(str(store), [str(csv)], IngestConfig()).dataset_id
    probe = EpochProbe()
    model = ModelConfig(cell=case.cell, hidden=case.hidden, depth=case.depth, embedding=embedding,
                        dropout=0.0)
    train = TrainConfig(batch_size=case.batch, epochs=case.epochs, max_minutes=600.0,
                        patience=case.epochs)
    start = time.perf_counter()
    outcome = train_model.fn(str(store), dataset, model, train, precision, [probe])
    wall = time.perf_counter() - start
    from tasks.common import open_store

    summary = open_store(str(store)).manifest("models", outcome.model_id)["summary"]
    return {"wall": wall, "characters": summary["characters"], "epochs": probe.rows,
            "precision": open_store(str(store)).manifest("models", outcome.model_id)[
                "params"]["precision"]}


def _article_run(case: Case, texts: list[str], seed: int) -> tuple[float, int, float]:
    """The article's fit: whole epochs over its first headlines, or a few batches."""
    from benchmarks.article_baseline import ArticleModel
    from benchmarks.common import VOCABULARY

    article = ArticleModel(VOCABULARY, case.hidden, case.cell, case.depth,
                           rng=np.random.default_rng(seed))
    article.fit(texts[:4], batch_size=4, epochs=1, max_batches=1)  # eager warm-up
    if case.article_headlines:
        stats = article.fit(texts[:case.article_headlines], case.batch, epochs=1,
                            rng=np.random.default_rng(seed))
    else:
        stats = article.fit(texts, case.batch, epochs=1, max_batches=case.article_batches,
                            rng=np.random.default_rng(seed))
    return stats.chars_per_second, stats.chars, stats.seconds


def _print_epochs(rows: list[dict[str, Any]], flops_per_char: float, peak: float,
                  chars_per_epoch: int) -> None:
    print(f"  {'epoch':>5}{'seconds':>9}{'train s':>9}{'valid s':>9}{'chars/s':>10}"
          f"{'GFLOP/s':>9}{'%peak':>7}{'cores':>7}{'others':>8}{'niced':>7}{'idle':>6}"
          f"{'majflt':>8}{'traces':>7}")
    for r in rows:
        rate = chars_per_epoch / r["train_seconds"]
        print(f"  {r['epoch']:>5}{r['seconds']:>9.1f}{r['train_seconds']:>9.1f}"
              f"{r['validation_seconds']:>9.2f}{rate:>10,.0f}{rate * flops_per_char / 1e9:>9.1f}"
              f"{100 * rate * flops_per_char / peak:>6.0f}%{r['cores']:>7.2f}"
              f"{100 * r.get('load_others', 0):>7.0f}%{100 * r.get('load_niced', 0):>6.0f}%"
              f"{100 * r.get('load_idle', 0):>5.0f}%{r['majflt']:>8}{r.get('traces', '-'):>7}")


def run(mode: str = "full", *, cases: Sequence[str] | None = None, epochs: int | None = None,
        precision: str = "auto", csv: Path = DEFAULT_CSV, seed: int = 0) -> list[Verdict]:
    """Run the training benchmark, print its tables, return the verdicts."""
    import tensorflow as tf

    from charlm.model import resolve_precision

    print_header("training over whole runs: `charlm train` (tasks.train.train_model) vs the "
                 "article baseline", mode)
    policy = resolve_precision(precision)
    compute = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16,
               "mixed_float16": tf.float16}[policy]
    if mode == "tiny":
        chosen = [TINY]
    else:
        table = QUICK if mode == "quick" else CASES
        chosen = [table[name] for name in (cases or ("small", "article"))]
    if epochs:
        chosen = [Case(**{**c.__dict__, "epochs": epochs}) for c in chosen]
    source = Path(csv)
    if source.exists():
        all_texts = load_headlines(source)
    elif mode == "tiny":
        print(f"  {source} not found: synthetic headlines (tiny mode)")
        all_texts = tiny_texts()
    else:
        raise SystemExit(f"{source} not found (pass --csv); only --tiny runs without it")

    peak_seconds = {"full": 2.0, "quick": 1.0, "tiny": 0.05}[mode]
    peaks = [matmul_flops(compute, seconds=peak_seconds)]
    verdicts: list[Verdict] = []
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        for case in chosen:
            texts = all_texts[:case.rows] if case.rows else all_texts
            article_texts = split_headlines(texts)["train"]
            print(f"\ncase {case.name}: {case.label()}, one-hot, {case.epochs} epochs over "
                  f"{len(texts):,} CSV rows", flush=True)
            before = _article_run(case, article_texts, seed)
            print(f"  article (before): {before[1]:,} chars in {before[2]:.1f} s = "
                  f"{before[0]:,.0f} chars/s", flush=True)
            ours = _charlm_run(case, texts, Path(tmp), precision)
            after = _article_run(case, article_texts, seed + 1)
            print(f"  article (after):  {after[1]:,} chars in {after[2]:.1f} s = "
                  f"{after[0]:,.0f} chars/s", flush=True)
            results.append((case, ours, (before[0] + after[0]) / 2))
    peaks.append(matmul_flops(compute, seconds=peak_seconds))
    peak = max(peaks)
    print(f"\n  {compute.name} matmul peak 2048x2048: {peak / 1e9:.1f} GFLOP/s (best of "
          f"{len(peaks)}: before and after the runs); charlm precision {policy}")

    for case, ours, article_rate in results:
        flops = train_flops_per_char(case.cell, VOCAB, case.hidden, case.depth)
        per_epoch = ours["characters"] // case.epochs
        print(f"\n{case.name}: {case.label()} ({per_epoch:,} characters per epoch)")
        _print_epochs(ours["epochs"], flops, peak, per_epoch)
        whole = ours["characters"] / ours["wall"]
        print(f"  whole run: {ours['characters']:,} characters in {ours['wall']:.1f} s "
              f"(dataset read, model build, tracing, every epoch, validation, checkpoints, "
              f"publishing) = {whole:,.0f} chars/s; article {article_rate:,.0f} chars/s")
        ratio = whole / article_rate
        print(f"ratio {case.name} ({case.label()}): charlm whole run / article chars/s = "
              f"{ratio:.1f}x")
        if case.name in ("small", "tiny"):
            verdicts.append(Verdict("train", f"{case.name} {case.label()} whole-run chars/s "
                                    "charlm/article", ratio, RATIO_TARGET))
        if case.name == "article" and len(ours["epochs"]) >= 2:
            steady = ours["epochs"][1:]
            seconds = [r["train_seconds"] for r in steady]
            median = statistics.median(seconds)
            rate = per_epoch * len(steady) / sum(seconds)
            print(f"  steady state (epochs 2..{case.epochs}): {rate:,.0f} chars/s = "
                  f"{rate * flops / 1e9:.1f} GFLOP/s; slowest epoch {max(seconds):.1f} s vs "
                  f"median {median:.1f} s")
            verdicts.append(Verdict("train", f"{case.label()} steady epochs / bf16 matmul peak",
                                    rate * flops / peak, PEAK_TARGET, unit=""))
            verdicts.append(Verdict("train", f"{case.label()} slowest / median epoch",
                                    max(seconds) / median, EVEN_TARGET, higher_is_better=False,
                                    unit=""))
    for verdict in verdicts:
        print(verdict.line())
    return verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_mode_arguments(parser)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES),
                        help="which cases (default: small and article)")
    parser.add_argument("--epochs", type=int, help="epochs per charlm run (default per case)")
    parser.add_argument("--precision", default="auto",
                        choices=PRECISIONS,
                        help="charlm's precision (auto: as charlm train resolves it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    verdicts = run(args.mode, cases=args.cases, epochs=args.epochs, precision=args.precision,
                   csv=args.csv, seed=args.seed)
    return 1 if args.strict and not all(v.passed for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
