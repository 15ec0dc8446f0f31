"""Benchmark: peak memory of training as the dataset grows (charlm vs the article baseline).

For each corpus size (default 50k, 300k and 1.2M headlines: the shared ABC-news headlines
repeated, each copy a fresh string object, as a real read would give) a FRESH child
process per implementation and size:

* charlm: builds the list of texts, ``Corpus.from_texts`` (the real task path), drops the
  list (as ``tasks.train`` does), builds lstm 128x2 (one-hot input, dropout 0) and runs
  ``charlm.train.fit`` (batch 128) for `--batches` batches (a callback stops it);
* article: builds the same list and runs ``ArticleModel.fit(max_batches=...)``, which
  trains from the Python list itself (and copies it).

Each child reports (Linux /proc and getrusage; KiB converted to MiB):
  ready       current RSS once data and model are built, before training
  whole peak  the process's peak RSS (VmHWM) including building the corpus (so the
              transient list of Python strings counts). Not getrusage's ru_maxrss: on
              Linux a child's ru_maxrss includes its parent's RSS at fork/exec time, which
              is GBs when run_all has just run the training benchmark.
  train peak  peak RSS during the training batches only (VmHWM after resetting it with
              /proc/self/clear_refs; where that is refused, the max RSS sampled per batch)
  corpus      bytes of charlm's encoded corpus (flat int8 ids + int64 offsets)
The verdict: charlm's train-peak growth from the smallest to the largest size, divided by
its corpus-buffer growth; <= 1.5x means training adds little beyond the buffer itself
(a few int64 index arrays per headline for the batch order).

    .venv/bin/python -m benchmarks.bench_memory                 # 50k, 300k, 1.2M
    .venv/bin/python -m benchmarks.bench_memory --quick         # 50k and 1.2M, fewer batches
    .venv/bin/python -m benchmarks.bench_memory --tiny          # smoke test
    .venv/bin/python -m benchmarks.bench_memory --no-article    # charlm only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_CSV  # noqa: E402

TARGET_GROWTH = 1.5  # train-peak growth / corpus-buffer growth, charlm
MODE_DEFAULTS = {  # sizes, charlm batches, article batches, (hidden, depth, batch), jobs
    "full": ((50_000, 300_000, 1_200_000), 30, 5, (128, 2, 128), 1),
    "quick": ((50_000, 1_200_000), 10, 2, (128, 2, 128), 1),
    "tiny": ((2_000, 8_000), 3, 1, (16, 1, 16), 4),
}
MIB = 2**20


# -- child side -------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM; Linux >= 4.0). False when refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _base_headlines(csv: Path) -> list[str]:
    if csv.exists():
        from benchmarks.common import load_headlines

        texts = load_headlines(csv)
    else:  # tiny mode without the shared data
        from benchmarks.harness import tiny_texts

        texts = tiny_texts()
    return [t for t in texts if len(t) <= 256 and all(10 < ord(ch) < 128 for ch in t)]


def _make_texts(base: list[str], size: int) -> list[str]:
    # encode/decode gives each repeat its own string object, like reading a real file.
    return [base[i % len(base)].encode("ascii").decode("ascii") for i in range(size)]


def child(impl: str, size: int, batches: int, hidden: int, depth: int, batch_size: int,
          csv: Path, reset_peak: bool = True) -> dict:
    """Build the corpus and train; the figures of one child (reset_peak=False in-process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import Corpus
    from charlm.model import build_model
    from charlm.train import Callback, fit

    base = _base_headlines(csv)
    rss_start = _status_kib("VmRSS")
    texts = _make_texts(base, size)
    out: dict = {"impl": impl, "size": size, "texts_mib": (_status_kib("VmRSS") - rss_start) / 1024}
    samples: list[int] = []

    class Stop(Exception):
        pass

    if impl == "charlm":
        corpus = Corpus.from_texts(texts)
        out["corpus_mib"] = (corpus.flat.nbytes + corpus.offsets.nbytes) / MIB
        out["chars"] = int(corpus.flat.size)
        del texts
        gc.collect()
        validation = Corpus.from_texts(base[:64])
        model = build_model(ModelConfig("lstm", hidden, depth, embedding=0, dropout=0.0),
                            precision="float32")

        class Counter(Callback):
            def on_batch_end(self, step, logs) -> None:
                samples.append(_status_kib("VmRSS"))
                if step >= batches:
                    raise Stop

        def train() -> int:
            try:
                result = fit(model, corpus, validation,
                             TrainConfig(batch_size=batch_size, epochs=1, max_minutes=60.0),
                             callbacks=[Counter()])
                return result.steps
            except Stop:
                return batches
    else:
        from benchmarks.article_baseline import ArticleModel
        from benchmarks.common import VOCABULARY

        out["chars"] = sum(len(t) for t in texts)
        article = ArticleModel(VOCABULARY, hidden, "lstm", depth, rng=np.random.default_rng(0))

        def train() -> int:
            stats = article.fit(texts, batch_size, epochs=1, max_batches=batches)
            samples.append(_status_kib("VmRSS"))
            return stats.batches

    gc.collect()
    out["ready_mib"] = _status_kib("VmRSS") / 1024
    # Not ru_maxrss: Linux folds the parent's peak at fork/exec into a child's ru_maxrss,
    # so a child of a big process (run_all after the training benchmark) would report it.
    peak_before = _status_kib("VmHWM")
    exact = _reset_peak() if reset_peak else False
    start = time.perf_counter()
    out["batches"] = train()
    out["train_seconds"] = time.perf_counter() - start
    peak_train = _status_kib("VmHWM") if exact else max(samples, default=0)
    out["train_peak_mib"] = peak_train / 1024
    out["train_peak_exact"] = exact
    out["whole_peak_mib"] = max(peak_before, _status_kib("VmHWM"), peak_train) / 1024
    out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


# -- parent side ------------------------------------------------------------------------------


def measure(impl: str, size: int, batches: int, shape: tuple[int, int, int], csv: Path
            ) -> dict:
    hidden, depth, batch_size = shape
    command = [sys.executable, str(Path(__file__).resolve()), "--child", impl,
               "--size", str(size), "--batches", str(batches), "--hidden", str(hidden),
               "--depth", str(depth), "--batch-size", str(batch_size), "--csv", str(csv)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{impl} child at {size} headlines failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(mode: str = "full", *, sizes: Sequence[int] | None = None, batches: int | None = None,
        article_batches: int | None = None, article: bool = True, jobs: int | None = None,
        csv: Path = DEFAULT_CSV) -> list:
    """Run the memory benchmark, print its table, return the verdicts."""
    from benchmarks.harness import Verdict, print_header

    d_sizes, d_batches, d_article, shape, d_jobs = MODE_DEFAULTS[mode]
    sizes = sorted(sizes or d_sizes)
    batches = batches or d_batches
    article_batches = article_batches or d_article
    jobs = jobs or d_jobs
    hidden, depth, batch_size = shape
    print_header("memory: peak RSS of training vs corpus size", mode)
    print(f"  lstm {hidden}x{depth} batch {batch_size}; charlm {batches} batches, "
          f"article {article_batches if article else 0} batches; one fresh process per "
          f"implementation and size ({jobs} at a time)")
    impls = ["charlm", "article"] if article else ["charlm"]
    tasks = [(impl, size) for size in sizes for impl in impls]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {task: pool.submit(measure, task[0], task[1],
                                     batches if task[0] == "charlm" else article_batches,
                                     shape, Path(csv)) for task in tasks}
        results = {task: future.result() for task, future in futures.items()}

    print(f"{'impl':<9}{'headlines':>11}{'chars':>12}{'corpus MiB':>11}{'texts MiB':>10}"
          f"{'ready MiB':>10}{'train peak':>11}{'whole peak':>11}{'batches':>8}")
    for impl, size in tasks:
        r = results[(impl, size)]
        corpus = f"{r['corpus_mib']:.1f}" if "corpus_mib" in r else "-"
        flag = "" if r["train_peak_exact"] else "~"
        print(f"{impl:<9}{size:>11,}{r['chars']:>12,}{corpus:>11}{r['texts_mib']:>10.1f}"
              f"{r['ready_mib']:>10.0f}{flag + format(r['train_peak_mib'], '.0f'):>11}"
              f"{r['whole_peak_mib']:>11.0f}{r['batches']:>8}")
    small, large = sizes[0], sizes[-1]
    verdicts = []
    if small == large:
        print("  one size only: no growth to report")
        return verdicts
    for impl in impls:
        a, b = results[(impl, small)], results[(impl, large)]
        print(f"growth {impl} {small:,} -> {large:,} headlines: train peak "
              f"{b['train_peak_mib'] - a['train_peak_mib']:+.0f} MiB, whole peak "
              f"{b['whole_peak_mib'] - a['whole_peak_mib']:+.0f} MiB"
              + (f", corpus buffer {b['corpus_mib'] - a['corpus_mib']:+.1f} MiB"
                 if impl == "charlm" else ""))
    a, b = results[("charlm", small)], results[("charlm", large)]
    corpus_growth = b["corpus_mib"] - a["corpus_mib"]
    ratio = (b["train_peak_mib"] - a["train_peak_mib"]) / corpus_growth
    print(f"ratio memory: charlm train-peak growth / corpus-buffer growth = {ratio:.2f}x")
    if article:
        c, d = results[("article", small)], results[("article", large)]
        ours = b["train_peak_mib"] - a["train_peak_mib"]
        theirs = d["train_peak_mib"] - c["train_peak_mib"]
        growth = f"{theirs / ours:.2f}x" if ours >= 1.0 else "n/a (charlm grew < 1 MiB)"
        print(f"ratio memory: article/charlm train-peak growth = {growth}; article/charlm "
              f"whole peak at {large:,} = {d['whole_peak_mib'] / b['whole_peak_mib']:.2f}x")
    verdict = Verdict("memory", f"charlm train-peak growth {small:,}->{large:,} headlines "
                      "/ corpus-buffer growth", ratio, TARGET_GROWTH, higher_is_better=False)
    print(verdict.line())
    verdicts.append(verdict)
    return verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--mode", choices=("full", "quick", "tiny"), default="full")
    group.add_argument("--quick", dest="mode", action="store_const", const="quick")
    group.add_argument("--tiny", dest="mode", action="store_const", const="tiny")
    parser.add_argument("--sizes", type=int, nargs="+", help="corpus sizes in headlines")
    parser.add_argument("--batches", type=int, help="charlm training batches per child")
    parser.add_argument("--article-batches", type=int, help="article training batches")
    parser.add_argument("--no-article", dest="article", action="store_false")
    parser.add_argument("--jobs", type=int, help="children run at the same time")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", choices=["charlm", "article"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hidden", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=128, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.size, args.batches, args.hidden, args.depth,
                               args.batch_size, args.csv)))
        return 0
    verdicts = run(args.mode, sizes=args.sizes, batches=args.batches,
                   article_batches=args.article_batches, article=args.article,
                   jobs=args.jobs, csv=args.csv)
    return 1 if args.strict and not all(v.passed for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
