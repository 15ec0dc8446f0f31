"""Run the speed and memory benchmarks (training, generation, memory) and print a summary.

    .venv/bin/python -m benchmarks.run_all            # full: for a quiet machine (~6 min)
    .venv/bin/python -m benchmarks.run_all --quick    # a few minutes, rough figures
    .venv/bin/python -m benchmarks.run_all --tiny     # smoke test (seconds)
    .venv/bin/python -m benchmarks.run_all --only train generate

Training and generation run in this process (each measures charlm and the article
baseline side by side); the memory benchmark starts one child process per measurement.
Exit status 0, or 1 with --strict when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_generate, bench_memory, bench_train  # noqa: E402
from benchmarks.harness import add_mode_arguments  # noqa: E402
from charlm.config import PRECISIONS  # noqa: E402

BENCHMARKS = ("train", "generate", "memory")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_mode_arguments(parser)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="charlm's dtype policy in the training benchmark")
    args = parser.parse_args(argv)

    verdicts = []
    start = time.perf_counter()
    for name in args.only:
        if name == "train":
            verdicts += bench_train.run(args.mode, precision=args.precision, csv=args.csv)
        elif name == "generate":
            verdicts += bench_generate.run(args.mode)
        else:
            verdicts += bench_memory.run(args.mode, csv=args.csv)
        print(flush=True)
    print(f"== summary [{args.mode} mode, {time.perf_counter() - start:.0f} s] ==")
    for verdict in verdicts:
        print(verdict.line())
    return 1 if args.strict and not all(v.passed for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
