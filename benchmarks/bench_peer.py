"""Benchmark: `charlm train` against a PyTorch peer on this CPU, same networks, same data.

For each shape and precision, in one run, interleaved: the PyTorch peer
(benchmarks.peer_torch, in its own process: embedding 64 -> nn.LSTM / nn.GRU -> linear,
length-bucketed batches, padding masked out of the loss, Adam, clipping; bf16 under
autocast) and charlm's real path (`tasks.train.train_model`, what `charlm train` calls, on
a fresh store: dataset read, build, tracing, every epoch with validation, checkpoints,
publishing), both with embedding 64 and no dropout, on the same CSV rows.

Figures are real characters per second (padding never counts; one end marker per headline
does). Steady = epochs 2.. with their validation pass; whole run = charlm's wall clock from
dataset read to published model. Targets (issue 19): charlm steady >= 1.2x the peer's steady
at the same precision; charlm whole run >= 0.85x its steady rate; lstm 512x3 in bf16 at
>= 75% of the bf16 matmul peak (2048x2048 tf.matmul, measured in this run).

    .venv/bin/pip install -e '.[bench]'          # torch (CPU build), once
    .venv/bin/python -m benchmarks.bench_peer    # all shapes, float32 and bf16 (~25 min)
    .venv/bin/python -m benchmarks.bench_peer --shapes lstm128 --precisions bfloat16 --epochs 2
    .venv/bin/python -m benchmarks.bench_peer --shapes gru384 --sides charlm --charlm-loop keras
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_train import Case, _charlm_run  # noqa: E402
from benchmarks.common import DEFAULT_CSV, load_headlines  # noqa: E402
from benchmarks.harness import GATES, VOCAB, Verdict, matmul_flops, print_header  # noqa: E402

EMBEDDING = 64  # the peer's and charlm's input width here
SPEED_TARGET = 1.2  # charlm steady / peer steady, same precision
WHOLE_TARGET = 0.85  # charlm whole run / charlm steady
PEAK_TARGET = 0.75  # lstm 512x3 bf16 steady / bf16 matmul peak
POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@dataclass(frozen=True)
class Shape:
    name: str
    cell: str
    hidden: int
    depth: int
    batch: int
    rows: int  # first CSV rows used (0: all)

    def label(self) -> str:
        return f"{self.cell} {self.hidden}x{self.depth} batch {self.batch}"


SHAPES = {
    "lstm128": Shape("lstm128", "lstm", 128, 2, 128, 0),
    "gru384": Shape("gru384", "gru", 384, 2, 128, 12_000),  # the default recipe's shape
    "lstm512": Shape("lstm512", "lstm", 512, 3, 1024, 12_000),  # the article's
}


def flops_per_char(shape: Shape) -> float:
    """Training matmul FLOPs per character (3 x forward), embedding 64 input."""
    forward = sum(2.0 * ((EMBEDDING if i == 0 else shape.hidden) + shape.hidden)
                  * GATES[shape.cell] * shape.hidden for i in range(shape.depth))
    return 3.0 * (forward + 2.0 * shape.hidden * VOCAB)


def run_peer(shape: Shape, precision: str, epochs: int, rows: int, csv: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks.peer_torch", "--cell", shape.cell,
               "--hidden", str(shape.hidden), "--depth", str(shape.depth),
               "--batch", str(shape.batch), "--precision", precision,
               "--epochs", str(epochs), "--rows", str(rows), "--csv", str(csv)]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"peer failed ({done.returncode}): {' '.join(command)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steady(epochs: list[dict], characters: int) -> float:
    """Chars/s over epochs 2.. (validation included); epoch 1 alone when there is one."""
    chosen = epochs[1:] or epochs
    return characters * len(chosen) / sum(e["seconds"] for e in chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    parser.add_argument("--precisions", nargs="+", choices=sorted(POLICY),
                        default=["float32", "bfloat16"])
    parser.add_argument("--epochs", type=int, default=3, help="per run (steady: 2..)")
    parser.add_argument("--rows", type=int, help="first CSV rows for every shape "
                        "(default: all for lstm128, 12,000 for the others)")
    parser.add_argument("--sides", nargs="+", choices=("peer", "charlm"),
                        default=["peer", "charlm"])
    parser.add_argument("--charlm-loop", choices=("charlm", "keras"), default="charlm",
                        help="keras: charlm with Keras' own LSTM/GRU loops (the path before "
                        "issue 19), for an A/B of charlm.recurrent and its fused kernels")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if not args.csv.exists():
        raise SystemExit(f"{args.csv} not found (pass --csv)")
    import tensorflow as tf

    if args.charlm_loop == "keras":
        from charlm import recurrent

        # Benchmark-only switch: every layer takes Keras' inner loop, as before issue 19.
        recurrent._fast_path_ok = lambda *_: False
    print_header("training speed: `charlm train` vs a PyTorch peer (same shapes, same rows)",
                 "full")
    peaks = [matmul_flops(tf.bfloat16, seconds=2.0)]
    texts = load_headlines(args.csv)
    table, verdicts = [], []
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        for name in args.shapes:
            shape = SHAPES[name]
            rows = shape.rows if args.rows is None else args.rows
            for precision in args.precisions:
                print(f"\n{shape.label()}, {precision}, {args.epochs} epochs over "
                      f"{rows or len(texts):,} CSV rows", flush=True)
                got: dict[str, dict] = {}
                if "peer" in args.sides:
                    peer = run_peer(shape, precision, args.epochs, rows, args.csv)
                    got["peer"] = {"steady": steady(peer["epochs"], peer["characters"]),
                                   "whole": peer["characters"] * len(peer["epochs"])
                                   / peer["wall"], "epochs": peer["epochs"]}
                    print(f"  peer (torch {peer['torch']}, {peer['threads']} threads): "
                          f"steady {got['peer']['steady']:,.0f} chars/s", flush=True)
                if "charlm" in args.sides:
                    case = Case(f"{name}", shape.cell, shape.hidden, shape.depth, shape.batch,
                                rows, args.epochs, 0, 0)
                    ours = _charlm_run(case, texts[:rows] if rows else texts, Path(tmp),
                                       POLICY[precision], embedding=EMBEDDING)
                    per_epoch = ours["characters"] // args.epochs
                    got["charlm"] = {"steady": steady(ours["epochs"], per_epoch),
                                     "whole": ours["characters"] / ours["wall"],
                                     "epochs": ours["epochs"]}
                    for e in ours["epochs"]:
                        print(f"  charlm epoch {e['epoch']}: {e['seconds']:.1f} s (train "
                              f"{e['train_seconds']:.1f} s), train {e['train_bpc']:.3f} "
                              f"bits/char, validation {e['validation_bpc']:.3f}; others' CPU "
                              f"{100 * e.get('load_others', 0):.0f}%", flush=True)
                    print(f"  charlm ({ours['precision']}): steady "
                          f"{got['charlm']['steady']:,.0f} chars/s, whole run "
                          f"{got['charlm']['whole']:,.0f} chars/s", flush=True)
                table.append((shape, precision, got))
    peaks.append(matmul_flops(tf.bfloat16, seconds=2.0))
    peak = max(peaks)
    print(f"\nbf16 matmul peak 2048x2048: {peak / 1e9:.0f} GFLOP/s (best of before/after)")
    print("\n| shape | precision | charlm steady | charlm whole run | peer steady | "
          "charlm / peer | GFLOP/s (charlm) |")
    print("|---|---|---|---|---|---|---|")
    for shape, precision, got in table:
        ours, peer = got.get("charlm"), got.get("peer")
        ratio = ours["steady"] / peer["steady"] if ours and peer else float("nan")
        gflops = ours["steady"] * flops_per_char(shape) / 1e9 if ours else float("nan")
        print(f"| {shape.label()} | {precision} | "
              f"{ours['steady'] if ours else float('nan'):,.0f} | "
              f"{ours['whole'] if ours else float('nan'):,.0f} | "
              f"{peer['steady'] if peer else float('nan'):,.0f} | {ratio:.2f}x | "
              f"{gflops:.0f} |")
        if ours and peer:
            verdicts.append(Verdict("peer", f"{shape.label()} {precision} charlm/peer steady",
                                    ratio, SPEED_TARGET))
        if ours:
            verdicts.append(Verdict("peer", f"{shape.label()} {precision} whole run/steady",
                                    ours["whole"] / ours["steady"], WHOLE_TARGET, unit=""))
            if shape.name == "lstm512" and precision == "bfloat16":
                verdicts.append(Verdict("peer", f"{shape.label()} bf16 steady / matmul peak",
                                        gflops * 1e9 / peak, PEAK_TARGET, unit=""))
    print()
    for verdict in verdicts:
        print(verdict.line())
    return 1 if args.strict and not all(v.passed for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
