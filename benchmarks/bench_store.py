"""Benchmark: the artifact store on a local directory vs an S3 endpoint, side by side.

One process, one run, the same inputs on both sides; the S3 side is moto's server on
127.0.0.1 (tests/s3server.py: real HTTP, real ETags; started and stopped by pid here).
Each step goes through the code the pipeline runs:

1. publish a dataset version of `--rows` rows (default 1.2M: the shared ABC CSV repeated,
   cleaned once up front): `Store.publish` + `storage.datasets.write_dataset`, as
   ingestion does (the CSV parsing, identical on both sides, is left out);
2. publish a model version (the default 384x2 GRU, untrained) on that dataset:
   `Store.publish` + `charlm.model.save_model`, as training does, and make it champion;
3. load the champion cold (S3: an empty host cache) and warm (a new Store, the cache
   filled): `Store.path` (checksums verified) + `charlm.model.load_model`;
4. generate `-n` headlines from the champion: `tasks.generate.generate_headlines`
   (load, sample, publish a generation version).

Steps alternate local/S3 over `--rounds` rounds; the best time of each side is compared.
Afterwards the server's request log gives the GETs of every object of the dataset and
model: no file may be downloaded twice (the cache is keyed by sha256).

    .venv/bin/python -m benchmarks.bench_store            # 1.2M rows, 1,000 headlines
    .venv/bin/python -m benchmarks.bench_store --tiny     # smoke test

Targets: S3 publish <= 1.5x local; warm load and generation <= 1.1x local; no file
downloaded twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # s3server

from benchmarks.common import DEFAULT_CSV  # noqa: E402
from benchmarks.harness import Verdict, print_header  # noqa: E402

PUBLISH_TARGET, WARM_TARGET = 1.5, 1.1


def dataset_frame(rows: int):
    """`rows` clean headline rows in the dataset schema (the shared CSV, repeated)."""
    import polars as pl

    from storage.datasets import SPLITS

    base = pl.read_csv(DEFAULT_CSV, schema_overrides={"publish_date": pl.String}) \
        if DEFAULT_CSV.exists() else None
    if base is None:
        import numpy as np

        from charlm.demo_corpus import make_corpus

        base = pl.DataFrame(make_corpus(50_000, np.random.default_rng(0)),
                            schema=["publish_date", "headline_text"], orient="row")
    base = base.select(pl.col("publish_date").cast(pl.String), "headline_text")
    copies = -(-rows // base.height)
    frame = pl.concat([base] * copies).head(rows).with_row_index("row", offset=1)
    return frame.select(
        pl.col("publish_date").str.to_date("%Y%m%d", strict=False)
        .fill_null(pl.date(2003, 2, 19)).alias("publish_date"),
        pl.col("headline_text").alias("headline"),
        pl.lit(SPLITS[0]).alias("split"), pl.lit("bench.csv").alias("source"),
        pl.col("row").cast(pl.Int64))


def timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_200_000)
    parser.add_argument("-n", type=int, default=1000, help="headlines to generate")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="smoke test: 20k rows, 50 lines")
    args = parser.parse_args(argv)
    if args.tiny:
        args.rows, args.n, args.rounds = 20_000, 50, 1
    print_header("artifact store: local directory vs S3 (moto on 127.0.0.1)",
                 "tiny" if args.tiny else "full")

    from s3server import S3Server

    from charlm.config import ModelConfig, SampleConfig
    from charlm.model import build_model, load_model, save_model
    from storage import Store
    from storage.cache import FileCache
    from storage.datasets import write_dataset
    from storage.layout import ModelFiles
    from storage.object_store import ObjectStore
    from tasks.generate import generate_headlines

    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    server = S3Server(log_path=work / "moto.log")
    os.environ.update(server.env)
    frame = dataset_frame(args.rows)
    network = ModelConfig()
    model = build_model(network)
    sampling = SampleConfig(max_new_chars=60, seed=1)
    roots = {"local": str(work / "local"), "s3": server.bucket("bench")}
    caches = {"publish": work / "cache-publish", "read": work / "cache-read"}
    times: dict[tuple[str, str], list[float]] = {}

    def record(step: str, side: str, seconds: float) -> None:
        times.setdefault((step, side), []).append(seconds)

    def store(side: str, cache: Path) -> Store:
        os.environ["CHARLM_CACHE"] = str(cache)
        if side == "s3":
            return ObjectStore(roots[side], cache=FileCache(cache))  # type: ignore[return-value]
        return Store(roots[side])

    def publish_dataset(s: Store) -> str:
        with s.publish("datasets") as staging:
            staging.summary.update(write_dataset(staging.path, frame))
        return staging.id

    def publish_model(s: Store, dataset_id: str) -> None:
        # As training does: the dataset by id, then the champion decision's alias move.
        with s.publish("models", parents={"datasets": [dataset_id]}) as staging:
            save_model(model, network, ModelFiles.at(staging.path))
        s.set_alias("models", "champion", staging.id, reason="benchmark")

    def load(s: Store) -> None:
        load_model(ModelFiles.at(s.path("models", "champion")))

    try:
        for _ in range(args.rounds):
            for side in ("local", "s3"):
                s = store(side, caches["publish"])
                started = time.perf_counter()
                dataset_id = publish_dataset(s)
                record("publish dataset", side, time.perf_counter() - started)
                record("publish model", side,
                       timed(lambda s=s, d=dataset_id: publish_model(s, d)))
        for side in ("local", "s3"):  # cold: this host has never read the store
            record("load champion cold", side,
                   timed(lambda side=side: load(store(side, caches["read"]))))
        for _ in range(args.rounds + 1):
            for side in ("local", "s3"):
                record("load champion warm", side,
                       timed(lambda side=side: load(store(side, caches["read"]))))
        for _ in range(args.rounds):
            for side in ("local", "s3"):
                store(side, caches["read"])  # points CHARLM_CACHE at the warm cache
                record(f"generate {args.n}", side, timed(
                    lambda side=side: generate_headlines(roots[side], "champion", args.n,
                                                         sampling)))
        s3 = store("s3", caches["read"])
        keys = [info.key for kind in ("datasets", "models")
                for info in s3.backend.list(f"{kind}/")
                if not info.key.split("/")[1].startswith(".")]  # not aliases, history
    finally:
        server.close()
    # Counted once the server has exited: its request log is then complete on disk.
    downloads = {key: server.gets(f"/bench/store/{key} ") for key in keys}

    print(f"\n  {'step':<22}{'local s':>10}{'S3 s':>10}{'S3/local':>10}   (best of rounds)")
    verdicts = []
    for step in dict.fromkeys(s for s, _ in times):
        local, remote = min(times[(step, "local")]), min(times[(step, "s3")])
        ratio = remote / local
        print(f"  {step:<22}{local:>10.3f}{remote:>10.3f}{ratio:>9.2f}x")
        target = PUBLISH_TARGET if step.startswith("publish") else \
            WARM_TARGET if step.startswith(("load champion warm", "generate")) else None
        if target is not None:
            verdicts.append(Verdict("bench_store", f"S3/local {step}", ratio, target,
                                    higher_is_better=False))
    most = max(downloads.values(), default=0)
    print(f"\n  objects of the dataset and model versions: {len(downloads)}; downloads per "
          f"object: {sorted(set(downloads.values()))} (GETs in the server's log)")
    for key, count in downloads.items():
        if count > 1:
            print(f"  downloaded {count} times: {key}")
    verdicts.append(Verdict("bench_store", "most downloads of one file", most, 1,
                            higher_is_better=False, unit=""))
    print()
    for verdict in verdicts:
        print(verdict.line())
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
