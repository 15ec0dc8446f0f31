"""Benchmark: CSV -> dataset version files, charlm (polars) vs a pandas + Python-loop baseline.

Builds an ABC-format CSV of ~1.2M rows in a temporary directory (the shared 2003 data
repeated with dates shifted by whole years, 1 in 100 headlines given some non-ASCII
text so transliteration is exercised), then runs each implementation in its own
child process and reports wall time of the work (imports excluded), rows/s and the
child's peak RSS (ru_maxrss, imports included). Both implementations apply the same
rules (ingestion.cleaning.clean_text, ingestion.split.split_of) and write the same Parquet
files; the script checks that their outputs agree.

    .venv/bin/python benchmarks/bench_ingest.py [--rows N] [--keep]

Target for 1.2M rows on a 2-core machine: under 10 s and under 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / (
    "abcnews-2003-02-to-09.csv"
)
TARGET_SECONDS = 10.0
TARGET_MIB = 2048.0
NON_ASCII = [" \u2013 caf\u00e9", " (Z\u00fcrich)", " \u5317\u4eac",
             " na\u00efve \u201cquote\u201d"]


def build_csv(path: Path, rows: int) -> int:
    """Write an ABC-format CSV of `rows` rows; return the row count written."""
    import polars as pl

    if SHARED_CSV.exists():
        base = pl.read_csv(SHARED_CSV, infer_schema=False)
    else:  # no shared data: synthetic headlines from a fixed vocabulary, same format
        import numpy as np

        words = np.array("police council water govt court fire man plan health rain "
                         "new to in for of on over says calls set back".split())
        rng = np.random.default_rng(0)
        texts = [" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(45_914)]
        base = pl.DataFrame({"publish_date": ["20030219"] * len(texts), "headline_text": texts})
    copies = math.ceil(rows / base.height)
    frame = pl.concat(
        base.with_columns(
            publish_date=(pl.col("publish_date").cast(pl.Int64) + 10_000 * k).cast(pl.String)
        )
        for k in range(copies)
    ).head(rows)
    index = pl.int_range(pl.len())
    frame = frame.with_columns(
        headline_text=pl.when(index % 100 == 7)
        .then(pl.col("headline_text") + pl.lit(pl.Series(NON_ASCII)).gather(
            (index // 100) % len(NON_ASCII)))
        .otherwise(pl.col("headline_text"))
    )
    frame.write_csv(path)
    return frame.height


# -- the two implementations, each run in a child process ----------------------------------


def run_charlm(csv: Path, out: Path) -> int:
    from charlm.config import IngestConfig
    from ingestion.plan import plan_ingest, write_version

    plan = plan_ingest(None, [csv], IngestConfig())
    write_version(plan, out)
    return plan.rows


def run_pandas(csv: Path, out: Path) -> int:
    """The straightforward version: read_csv, a Python loop with clean_text, a set."""
    import datetime as dt
    import re

    import pandas as pd
    import polars as pl

    from charlm.config import IngestConfig
    from ingestion.cleaning import clean_text
    from ingestion.reasons import BAD_DATE, EMPTY, TOO_LONG
    from ingestion.split import split_of
    from storage.layout import DatasetFiles

    config = IngestConfig()
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False, on_bad_lines="skip")
    eight_digits = re.compile(r"[0-9]{8}")
    seen: set[tuple[dt.date, str]] = set()
    dates, texts, splits, rows = [], [], [], []
    bad_rows, bad_reasons, bad_raw = [], [], []
    for row, (date_text, raw_text) in enumerate(
        zip(frame["publish_date"], frame["headline_text"], strict=True), start=1
    ):
        reason = None
        date = None
        if eight_digits.fullmatch(date_text.strip()):
            try:
                date = dt.datetime.strptime(date_text.strip(), "%Y%m%d").date()
            except ValueError:
                pass
        text = clean_text(raw_text, config.lowercase)
        if date is None:
            reason = BAD_DATE
        elif not text:
            reason = EMPTY
        elif len(text) > config.max_headline_length:
            reason = TOO_LONG
        if reason is not None:
            bad_rows.append(row)
            bad_reasons.append(reason)
            bad_raw.append(f"{date_text},{raw_text}")
            continue
        if (date, text) in seen:
            continue
        seen.add((date, text))
        dates.append(date)
        texts.append(text)
        splits.append(split_of(text, config))
        rows.append(row)
    # pandas.to_parquet needs pyarrow, which is not installed: hand the columns to polars.
    pl.DataFrame({"publish_date": dates, "headline": texts, "split": splits,
                  "source": [csv.name] * len(texts), "row": rows},
                 schema_overrides={"publish_date": pl.Date, "row": pl.Int64}
                 ).write_parquet(DatasetFiles.at(out).headlines, compression="zstd")
    pl.DataFrame({"source": [csv.name] * len(bad_rows), "row": bad_rows, "reason": bad_reasons,
                  "raw": bad_raw}, schema_overrides={"row": pl.Int64}
                 ).write_parquet(DatasetFiles.at(out).quarantine, compression="zstd")
    return len(texts)


def worker(name: str, csv: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run = {"charlm": run_charlm, "pandas": run_pandas}[name]
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    rows = run(csv, out)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds (all threads) say how much work was done even when the machine is
    # shared and wall time is noisy.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak_mib = after.ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": cpu,
                      "peak_mib": peak_mib}))


def measure(name: str, csv: Path, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", name,
         "--csv", str(csv), "--out", str(out)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_200_000, help="rows in the CSV")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--worker", choices=["charlm", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.csv, args.out)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        csv = tmp / "headlines.csv"
        rows = build_csv(csv, args.rows)
        size_mib = csv.stat().st_size / 2**20
        print(f"input: {rows:,} rows, {size_mib:.1f} MiB ({csv})")
        results = {name: measure(name, csv, tmp / name) for name in ("charlm", "pandas")}

        import polars as pl

        from storage.layout import DatasetFiles

        same = pl.read_parquet(DatasetFiles.at(tmp / "charlm").headlines).equals(
            pl.read_parquet(DatasetFiles.at(tmp / "pandas").headlines))
        print(f"{'implementation':<22}{'seconds':>9}{'cpu s':>8}{'rows/s':>12}{'peak MiB':>10}")
        for name, label in (("charlm", "charlm (polars)"), ("pandas", "pandas + Python loop")):
            r = results[name]
            print(f"{label:<22}{r['seconds']:>9.2f}{r['cpu_seconds']:>8.2f}"
                  f"{rows / r['seconds']:>12,.0f}{r['peak_mib']:>10,.0f}")
        c, p = results["charlm"], results["pandas"]
        print(f"{'ratio pandas/charlm':<22}{p['seconds'] / c['seconds']:>8.1f}x"
              f"{p['cpu_seconds'] / c['cpu_seconds']:>7.1f}x{'':>12}"
              f"{p['peak_mib'] / c['peak_mib']:>9.1f}x")
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: "
              "wall times stretch on a shared machine)")
        print(f"same headlines.parquet from both: {'yes' if same else 'NO'}")
        ok = c["seconds"] < TARGET_SECONDS and c["peak_mib"] < TARGET_MIB
        print(f"target (< {TARGET_SECONDS:.0f} s, < {TARGET_MIB:,.0f} MiB): "
              f"{'met' if ok else 'MISSED'}")
        return 0 if same else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
