"""Continual retraining: the shared ABC CSVs replayed as a stream of nights, warm vs cold.

A base dataset (the headlines before 2003-08-01) and one cold model trained on it start two
stores, `warm` and `cold` (the second a copy of the first). Each simulated night ingests the
next slice of days (by publish_date; the last nights come from abcnews-2003-10.csv) into
both stores with `charlm ingest`, which scores the champion on the new headlines before any
retraining (the drift record), then retrains with the same budget: `charlm train --from
champion` in the warm store, `charlm train` (random weights) in the cold one; the
challenger is promoted only if it beats the champion on the test split, as every night.
The final lines compare the warm champion after the last night with one cold model trained
--final-minutes on the last night's dataset, on its test split and on abcnews-2003-10.csv.

Every step is the real command (cli.main.main in this process, so TensorFlow starts once);
each command line is printed before it runs. Figures are read back from the stores: drift
evaluations (new-slice bits/char), test evaluations (test bits/char), alias history.

    python -m benchmarks.bench_continual [--minutes 5] [--nights 10] [--final-minutes 30]
    python -m benchmarks.bench_continual --quick     # tiny: the test suite's smoke run
    python -m benchmarks.bench_continual --peak-lrs 0.001 0.002 0.005 --minutes 2
        # the warm-start peak-LR choice: night 1, warm from the base at each peak, on validation
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_CSV
from cli.main import main as charlm_main

OCTOBER_CSV = DEFAULT_CSV.with_name("abcnews-2003-10.csv")
BASE_BEFORE = 20030801  # the base dataset: headlines published before this day
LAST_NIGHTS = 5  # the warm/cold new-slice average is taken over this many last nights
NEW_SLICE_MARGIN = 0.05  # target: warm champion's new-slice bits/char this far below cold's
# --quick: a tiny network on every QUICK_EVERY-th headline, seconds per run.
QUICK_EVERY = 60
QUICK_NETWORK = ["--cell", "gru", "--hidden", "16", "--depth", "1", "--embedding", "8",
                 "--batch-size", "32"]


@dataclass
class Night:
    """One store's figures for one night."""

    new_bpc: float | None  # the champion (before retraining) on the night's new headlines
    test_bpc: float | None  # the champion after the night, on the night's test split
    seconds: float  # wall time of `charlm train` (training, evaluations, publishing)
    promoted: bool


def command(store: Path, *argv: str, log: Path) -> str:
    """Run `charlm --storage STORE ARGV...` in this process (printing it first); its stdout's
    last line. Its stderr goes to `log`; a failure stops the benchmark with that log's tail."""
    line = "charlm " + shlex.join(["--storage", str(store), *argv])
    print(f"  $ {line}", flush=True)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = charlm_main(["--storage", str(store), *argv])
    with log.open("a") as f:
        f.write(f"$ {line}\n{err.getvalue()}\n")
    if code != 0:
        sys.exit(f"{line} failed ({code}):\n{err.getvalue()[-2000:]}")
    return out.getvalue().strip().splitlines()[-1] if out.getvalue().strip() else ""


def write_slices(workdir: Path, nights: int, every: int) -> tuple[Path, list[tuple[Path, str]]]:
    """The base CSV and one CSV per night (with its date range): the days after the base,
    in order, split into `nights` runs of consecutive days; every `every`-th row kept."""
    import numpy as np
    import polars as pl

    frames = [pl.read_csv(path, schema_overrides={"publish_date": pl.Int64,
                                                  "headline_text": pl.String})
              for path in (DEFAULT_CSV, OCTOBER_CSV)]
    rows = pl.concat([f.select("publish_date", "headline_text") for f in frames])
    rows = rows.with_row_index().filter(pl.col("index") % every == 0).drop("index")
    base = workdir / "base.csv"
    rows.filter(pl.col("publish_date") < BASE_BEFORE).write_csv(base)
    later = rows.filter(pl.col("publish_date") >= BASE_BEFORE)
    days = np.array(sorted(later["publish_date"].unique().to_list()))
    slices = []
    for i, span in enumerate(np.array_split(days, nights)):
        path = workdir / f"night-{i + 1:02d}.csv"
        later.filter(pl.col("publish_date").is_in(span.tolist())).write_csv(path)
        slices.append((path, f"{span[0]}-{span[-1]}"))
    return base, slices


def newest_drift_bpc(store: Path) -> float | None:
    from storage import Store

    drifts = [m for m in Store(store).versions("evaluations")
              if m["summary"].get("drift") == "batch"]
    return drifts[-1]["summary"].get("bits_per_char") if drifts else None


def test_bpc(store: Path, model: str = "champion") -> float | None:
    """A model's (version id or alias) bits/char on the latest dataset's test split, as train
    evaluated it."""
    from storage import Store

    s = Store(store)
    model, dataset = s.resolve("models", model), s.resolve("datasets", "latest")
    found = [m["summary"]["bits_per_char"] for m in s.versions("evaluations")
             if m["params"].get("split") == "test"
             and m["parents"] == {"models": [model], "datasets": [dataset]}]
    return found[-1] if found else None


def october_bpc(store: Path, model: str, log: Path) -> float:
    """`model`'s bits/char on abcnews-2003-10.csv (`charlm evaluate --csv`, no samples)."""
    from storage import Store

    command(store, "evaluate", model, "--csv", str(OCTOBER_CSV), "--samples", "0", log=log)
    newest = [m for m in Store(store).versions("evaluations")
              if m["parents"] == {"models": [model]}][-1]
    return newest["summary"]["bits_per_char"]


def night(store: Path, csv: Path, train: list[str], log: Path) -> Night:
    """Ingest the night's slice (drift scores the champion on it), then retrain."""
    from storage import Store

    command(store, "ingest", str(csv), log=log)
    new_bpc = newest_drift_bpc(store)
    before = Store(store).resolve("models", "champion")
    t0 = time.monotonic()
    command(store, "train", *train, log=log)
    seconds = time.monotonic() - t0
    after = Store(store).resolve("models", "champion")
    return Night(new_bpc, test_bpc(store), seconds, after != before)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def compare_peak_lrs(store: Path, slices: list[tuple[Path, str]], budget: list[str],
                     peaks: list[float], log: Path) -> None:
    """Night 1 only: warm from the base champion at each peak; validation bits/char."""
    from storage import Store

    command(store, "ingest", "--no-drift", str(slices[0][0]), log=log)
    base = Store(store).resolve("models", "champion")
    print(f"\npeak learning rate of a warm start (from base {base}, night 1 {slices[0][1]}):")
    for peak in peaks:
        model = command(store, "train", "--from", base, "--peak-lr", str(peak), *budget,
                        log=log)
        summary = Store(store).manifest("models", model)["summary"]
        print(f"  peak {peak:g}: validation {summary['validation_bpc']:.4f} bits/char, "
              f"{summary['steps']} steps, {summary['seconds']:.0f} s", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="nightly budget B (default 5)")
    p.add_argument("--nights", type=int, default=10, help="simulated nights (default 10)")
    p.add_argument("--final-minutes", type=float, default=30.0,
                   help="budget of the final cold model (default 30)")
    p.add_argument("--base-minutes", type=float, default=None,
                   help="budget of the base model (default: --minutes)")
    p.add_argument("--peak-lrs", type=float, nargs="+",
                   help="instead of the nights: compare warm starts at these peak rates")
    p.add_argument("--quick", action="store_true", help="tiny: a smoke run for the suite")
    p.add_argument("--workdir", type=Path, help="keep the stores here (default: a temp dir)")
    p.add_argument("--train-options", default="", metavar="OPTIONS",
                   help='extra `charlm train` options of every run, e.g. '
                        '--train-options="--hidden 256" (default: none)')
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.final_minutes = min(args.minutes, 0.05), min(args.final_minutes, 0.1)
        args.nights = min(args.nights, 3)
    args.network = shlex.split(args.train_options)
    return args


def main(argv: list[str] | None = None) -> list[tuple[str, Night, Night]]:
    args = parse_args(argv)
    if not (DEFAULT_CSV.exists() and OCTOBER_CSV.exists()):
        sys.exit(f"needs {DEFAULT_CSV} and {OCTOBER_CSV}")
    from benchmarks.harness import print_header

    print_header("continual retraining: warm vs cold", "quick" if args.quick else "full")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="continual-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "commands.log"
    network = (QUICK_NETWORK if args.quick else []) + args.network
    # A huge epoch count and patience: the wall-clock budget is what ends every run.
    budget = ["--epochs", "1000", *network]
    base_csv, slices = write_slices(workdir, args.nights, QUICK_EVERY if args.quick else 1)
    warm, cold = workdir / "warm", workdir / "cold"
    print(f"stores in {workdir}; each command's messages in {log}")
    command(warm, "ingest", str(base_csv), log=log)
    base_minutes = args.base_minutes or args.minutes
    command(warm, "train", "--max-minutes", str(base_minutes), *budget, log=log)
    if args.peak_lrs:
        compare_peak_lrs(warm, slices, ["--max-minutes", str(args.minutes), *budget],
                         args.peak_lrs, log)
        return []
    shutil.copytree(warm, cold)  # both stores start from the same base model
    rows = []
    for i, (csv, dates) in enumerate(slices, 1):
        print(f"night {i} ({dates}):", flush=True)
        train = ["--max-minutes", str(args.minutes), *budget]
        w = night(warm, csv, ["--from", "champion", *train], log)
        c = night(cold, csv, train, log)
        rows.append((dates, w, c))
    report(rows, args)
    plot = command(warm, "drift", log=log)  # the warm champion night by night
    print(f"drift trend of the warm store: {plot}")
    print("final: one cold model trained longer on the last night's dataset:")
    command(cold, "train", "--max-minutes", str(args.final_minutes), *budget, log=log)
    from storage import Store

    final = Store(cold).resolve("models", "latest")
    final_bpc = test_bpc(cold, final)
    assert final_bpc is not None, "charlm train evaluates the test split"
    compare_final(f"after night {len(rows)} test", rows[-1][1].test_bpc, final_bpc, args)
    compare_final(f"on {OCTOBER_CSV.name}",
                  october_bpc(warm, Store(warm).resolve("models", "champion"), log),
                  october_bpc(cold, final, log), args)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def compare_final(what: str, warm_bpc: float | None, cold_bpc: float,
                  args: argparse.Namespace) -> None:
    """The final target's line: the warm champion below the longer-trained cold model."""
    met = warm_bpc is not None and warm_bpc < cold_bpc
    print(f"final: warm champion {what} {_f(warm_bpc)} bits/char; cold model of "
          f"{args.final_minutes:g} min {cold_bpc:.4f}: {'PASS' if met else 'MISS'} "
          "(target: warm below)")


def report(rows: list[tuple[str, Night, Night]], args: argparse.Namespace) -> None:
    print(f"\nper night (budget {args.minutes:g} min; new = the champion on the night's new "
          "headlines before retraining, test = the champion after it):")
    print("| night | days | new warm | new cold | cold - warm | test warm | test cold | s warm "
          "| s cold | promoted warm | promoted cold |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    gaps = [None if w.new_bpc is None or c.new_bpc is None else c.new_bpc - w.new_bpc
            for _, w, c in rows]
    for i, ((dates, w, c), gap) in enumerate(zip(rows, gaps), 1):
        print(f"| {i} | {dates} | {_f(w.new_bpc)} | {_f(c.new_bpc)} | {_f(gap)} | "
              f"{_f(w.test_bpc)} | "
              f"{_f(c.test_bpc)} | {w.seconds:.0f} | {c.seconds:.0f} | "
              f"{'yes' if w.promoted else 'no'} | {'yes' if c.promoted else 'no'} |")
    last = gaps[-LAST_NIGHTS:]
    if last and None not in last:
        # The target holds on each night, so the verdict goes by the worst one.
        print(f"last {len(last)} nights: cold - warm new-slice bits/char = {min(last):.4f} "
              f"at the least, {sum(last) / len(last):.4f} on average "
              f"(target >= {NEW_SLICE_MARGIN} each night): "
              f"{'PASS' if min(last) >= NEW_SLICE_MARGIN else 'MISS'}")
    print(f"promotions: warm {sum(w.promoted for _, w, _ in rows)}, "
          f"cold {sum(c.promoted for _, _, c in rows)} of {len(rows)} nights")


if __name__ == "__main__":
    main()
