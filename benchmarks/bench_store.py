"""Benchmark: the artifact store's engine on a local directory and on S3, and the previous
engine on a local directory, side by side in one run.

Three sides, the same inputs on each, each in a child process of its own (the same process
state on every side; this one only starts them, asks for the steps and reads the results):

- **old local**: the engine of the release before the one-engine rewrite (git commit
  ad03c95, `--old`), its `storage/` package extracted into a temp folder that PYTHONPATH puts
  before the repository, so `charlm` and `tasks` are this checkout's;
- **local**: `storage.Store` on a directory;
- **S3**: `storage.Store` on moto's server on 127.0.0.1 (tests/s3server.py: real HTTP, real
  ETags; started and stopped by pid here), with its own host cache.

Each step goes through the code the pipeline runs:

1. publish a dataset version of `--rows` rows (default 1.2M: the shared ABC CSV repeated,
   cleaned once up front): `Store.publish` + `storage.datasets.write_dataset`, as
   ingestion does (the CSV parsing, identical on every side, is left out);
2. publish a model version (the default 384x2 GRU, untrained, the same weights on every
   side) on that dataset: `Store.publish` + `charlm.model.save_model`, as training does,
   and make it champion (`Store.set_alias`);
3. load the champion cold (S3: an empty host cache, a new one each round) and warm (a new
   Store, the cache filled): `Store.path` (checksums verified) + `charlm.model.load_model`;
4. generate `-n` headlines from the champion: `tasks.generate.generate_headlines`
   (load, sample, publish a generation version).

Every step runs `--rounds` times (warm loads one more), the sides taking turns within each
round; the best time of each side is compared. The server's request log then gives the GETs
of every file of the dataset and model versions (no file may be downloaded twice into one
cache: it is keyed by sha256) and the requests of one S3 model publish + promotion.

    .venv/bin/python -m benchmarks.bench_store --rounds 3   # 1.2M rows, 1,000 headlines
    .venv/bin/python -m benchmarks.bench_store --tiny       # smoke test

Targets: S3/local <= 1.5x for both publishes, <= 1.1x for the warm load and generation;
local/old <= 1.1x at every step; no file downloaded twice into one cache. Without git or the
old commit (an install from a tarball), the old side is skipped with one line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # s3server (tests/storage has no __init__.py)

from benchmarks.common import DEFAULT_CSV  # noqa: E402
from benchmarks.harness import Verdict, print_header  # noqa: E402

OLD_COMMIT = "ad03c95"  # the last release of the previous engine (Store + ObjectStore)
PUBLISH_TARGET, WARM_TARGET, OLD_TARGET = 1.5, 1.1, 1.1
SIDES = ("old", "local", "s3")
LABELS = {"old": "old local", "local": "local", "s3": "S3"}
DATASET, MODEL, COLD, WARM = ("publish dataset", "publish model+champion",
                              "load champion cold", "load champion warm")


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


class Steps:
    """The benchmark's steps on one store, run in this process with whichever `storage`
    package it imported (the old engine's in the child). Each returns its seconds."""

    def __init__(self, root: str, work: Path, rows: int, n: int) -> None:
        import keras

        from charlm.config import ModelConfig, SampleConfig
        from charlm.model import build_model

        self.root, self.work, self.n = root, work, n
        self.frame = dataset_frame(rows)
        self.network = ModelConfig()
        keras.utils.set_random_seed(0)  # the same weights on every side: the same samples
        self.model = build_model(self.network)
        self.sampling = SampleConfig(max_new_chars=60, seed=1)
        self.dataset_id = ""

    def store(self, cache: str):
        from storage import Store

        # generate_headlines opens its own Store, whose object-store cache is $CHARLM_CACHE.
        os.environ["CHARLM_CACHE"] = str(self.work / cache)
        if "://" in self.root:
            from storage.cache import FileCache

            return Store(self.root, cache=FileCache(self.work / cache))
        return Store(self.root)

    def publish_dataset(self) -> float:
        from storage.datasets import write_dataset

        s = self.store("cache-publish")
        started = time.perf_counter()
        with s.publish("datasets") as staging:
            staging.summary.update(write_dataset(staging.path, self.frame))
        self.dataset_id = staging.id
        return time.perf_counter() - started

    def publish_model(self) -> float:
        from charlm.model import save_model
        from storage.layout import ModelFiles

        s = self.store("cache-publish")
        started = time.perf_counter()
        # As training does: the dataset by id, then the champion decision's alias move.
        with s.publish("models", parents={"datasets": [self.dataset_id]}) as staging:
            save_model(self.model, self.network, ModelFiles.at(staging.path))
        s.set_alias("models", "champion", staging.id, reason="benchmark")
        return time.perf_counter() - started

    def load(self, cache: str) -> float:
        from charlm.model import load_model
        from storage.layout import ModelFiles

        return timed(lambda: load_model(ModelFiles.at(
            self.store(cache).path("models", "champion"))))

    def generate(self, cache: str) -> float:
        from tasks.generate import generate_headlines

        self.store(cache)  # points $CHARLM_CACHE at the warm cache
        return timed(lambda: generate_headlines(self.root, "champion", self.n, self.sampling))


def serve(root: str, work: Path, rows: int, n: int) -> int:
    """A side's child process: one JSON request a line on stdin ({"op": ..., "args": [...]}),
    one JSON reply a line on the original stdout; whatever the steps print goes to stderr."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prefect's and keras' prints must not interleave with the replies
    import storage

    steps = Steps(root, work, rows, n)
    replies.write(json.dumps({"storage": storage.__file__}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"seconds": getattr(steps, request["op"])(*request.get("args", []))}
        except Exception as error:  # noqa: BLE001 - reported as a skipped step, not fatal
            text = " ".join(str(error).split())
            reply = {"error": f"{type(error).__name__}: {text}"[:300]}
        replies.write(json.dumps(reply) + "\n")
    return 0


class Side:
    """One side's `Steps` in a child process of its own, run on request. Every side gets
    one, the new engine's too: in an A/A run (``--old HEAD``) with the new sides in the
    parent, the parent (which also drove S3) published 1.5-2.5x slower than the child running
    the same code, in every round; with a child per side the two local sides agreed.

    `engine`: a folder holding the `storage` package to run instead of this checkout's (put
    first on PYTHONPATH; `charlm` and `tasks` still come from this checkout). A step that
    fails there is kept in `skipped`, with the reason, and not asked for again."""

    def __init__(self, name: str, root: str, work: Path, rows: int, n: int,
                 engine: Path | None = None) -> None:
        self.name, self.engine = name, engine
        self.log_path = work / f"{name}.log"
        self.skipped: dict[str, str] = {}
        path = [str(p) for p in (engine, REPO) if p] + [os.environ.get("PYTHONPATH", "")]
        with open(self.log_path, "wb") as log:
            # -P: no cwd on sys.path, so `import storage` finds `engine`'s package first.
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "benchmarks.bench_store", "--serve", root,
                 str(work / name), "--rows", str(rows), "-n", str(n)],
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                text=True, env={**os.environ,
                                "PYTHONPATH": os.pathsep.join(path).rstrip(os.pathsep)})

    def ready(self) -> str:
        """The child's `storage` package file, once it has set up (refused if it is not the
        one asked for)."""
        found = Path(self._reply()["storage"]).resolve()
        wanted = (self.engine or REPO).resolve() / "storage"
        if not found.is_relative_to(wanted):
            raise RuntimeError(f"{LABELS[self.name]} side imported {found}, not {wanted}")
        return str(found)

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{LABELS[self.name]} side's process exited "
                               f"({self.log_path}):\n{tail}")
        return json.loads(line)

    def call(self, step: str, op: str, *args: str) -> float | None:
        """`Steps.<op>(*args)`'s seconds in the child; None if `step` failed there."""
        if step in self.skipped:
            return None
        self.process.stdin.write(json.dumps({"op": op, "args": list(args)}) + "\n")
        self.process.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            self.skipped[step] = reply["error"]
            return None
        return reply["seconds"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the child's loop ends at end of input
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def extract_old(work: Path, commit: str = OLD_COMMIT) -> Path | None:
    """A folder holding `commit`'s `storage` package, or None (with one printed line)
    without git or the commit (an install from a tarball)."""
    try:
        subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
                       capture_output=True, check=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar",
                                  commit, "storage"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        print(f"  old local: skipped (no git checkout with commit {commit} at {REPO})")
        return None
    tree = work / "old-engine"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3})')


def requests_in(log: str) -> list[tuple[str, str, str]]:
    """(method, path, status) of every request line of moto's log text."""
    return [m.groups() for m in map(REQUEST.search, log.splitlines()) if m]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_200_000)
    parser.add_argument("-n", type=int, default=1000, help="headlines to generate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="smoke test: 20k rows, 50 lines")
    parser.add_argument("--old", default=OLD_COMMIT, metavar="REV",
                        help="the commit whose storage/ is the old side (default: %(default)s, "
                        "the release before the one-engine rewrite; HEAD: an A/A check)")
    parser.add_argument("--serve", nargs=2, metavar=("ROOT", "WORK"),
                        help=argparse.SUPPRESS)  # a side's child process
    args = parser.parse_args(argv)
    if args.tiny:
        args.rows, args.n, args.rounds = 20_000, 50, 1
    if args.serve:
        return serve(args.serve[0], Path(args.serve[1]), args.rows, args.n)
    print_header("artifact store: old engine (local) vs new engine, local and S3 (moto on "
                 "127.0.0.1)", "tiny" if args.tiny else "full")

    from s3server import S3Server

    from storage import Store
    from storage.cache import FileCache

    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    engine = extract_old(work, args.old)
    server = S3Server(log_path=work / "moto.log")
    os.environ.update(server.env)  # the S3 side's child inherits them
    url = server.bucket("bench")
    roots = {"old": str(work / "old" / "store"), "local": str(work / "local" / "store"),
             "s3": url}
    sides: dict[str, Side] = {}
    finished = False
    try:
        for name in SIDES:  # they set up at once, before anything is timed
            if name != "old" or engine is not None:
                sides[name] = Side(name, roots[name], work, args.rows, args.n,
                                   engine if name == "old" else None)
        for name, side in sides.items():
            print(f"  {LABELS[name] + ':':<11}"
                  f"{args.old + ': ' if name == 'old' else ''}{side.ready()}")
        status = measure(args, sides, server, Store(url, cache=FileCache(work / "listing")))
        finished = True
        return status
    finally:
        for side in sides.values():
            side.close()
        server.close()
        if finished:  # the stores hold a few hundred MB
            shutil.rmtree(work, ignore_errors=True)
        else:  # the sides' logs say what went wrong
            print(f"  kept for a look: {work}")


def measure(args: argparse.Namespace, sides: dict[str, Side], server, s3) -> int:
    """The rounds, the table and the verdicts (see the module docstring); `s3`: a Store of
    the S3 side, for its keys."""
    generate_step = f"generate {args.n}"
    times: dict[tuple[str, str], list[float]] = {}
    marks: list[int] = []  # moto's log size where each cold round's cache starts
    one_publish = (0, 0)  # moto's log before and after the last S3 model publish

    def run(step: str, side: str, op: str, *args: str) -> None:
        seconds = sides[side].call(step, op, *args)
        if seconds is not None:
            times.setdefault((step, side), []).append(seconds)

    def turns(round_: int) -> list[str]:
        # Who goes first changes each round: no side always runs right after another.
        order = list(sides)
        return order[round_ % len(order):] + order[:round_ % len(order)]

    def log_size() -> int:
        return server.log_path.stat().st_size

    for r in range(args.rounds):
        for side in turns(r):
            run(DATASET, side, "publish_dataset")
            before = log_size()
            run(MODEL, side, "publish_model")
            if side == "s3":
                one_publish = (before, log_size())
    warm = f"cache-read-{args.rounds - 1}"
    for r in range(args.rounds):  # cold: a cache this host has never filled
        marks.append(log_size())
        for side in turns(r):
            run(COLD, side, "load", f"cache-read-{r}")
    for r in range(args.rounds + 1):
        for side in turns(r):
            run(WARM, side, "load", warm)
    for r in range(args.rounds):
        for side in turns(r):
            run(generate_step, side, "generate", warm)
    keys = [info.key for kind in ("datasets", "models") for info in s3.backend.list(f"{kind}/")
            if not info.key.split("/")[1].startswith(".")]  # not aliases, history
    for side in sides.values():
        side.close()
    server.close()

    # Read once the server has exited: its request log is then complete on disk. Each
    # stretch between marks used one cache (the publishes theirs, each cold round a new
    # one, the warm loads and generation the last cold round's).
    log = server.log_path.read_bytes()
    cuts = [0, *marks, len(log)]
    stretches = [requests_in(log[a:b].decode(errors="replace")) for a, b in zip(cuts, cuts[1:])]
    downloads = {key: max(sum(1 for method, path, _ in stretch
                              if method == "GET" and path == f"/bench/store/{key}")
                          for stretch in stretches) for key in keys}
    publish_requests = requests_in(log[one_publish[0]:one_publish[1]].decode(errors="replace"))

    def best(step: str, side: str) -> float | None:
        return min(times[(step, side)]) if (step, side) in times else None

    def cell(value: float | None, suffix: str = "") -> str:
        return "-" if value is None else f"{value:.3f}{suffix}" if not suffix \
            else f"{value:.2f}{suffix}"

    print(f"\n  {'step':<24}{'old local s':>12}{'local s':>10}{'S3 s':>10}{'local/old':>11}"
          f"{'S3/local':>10}   (best of rounds)")
    verdicts, old_verdicts = [], []
    for step in dict.fromkeys(s for s, _ in times):
        prior, local, remote = (best(step, side) for side in SIDES)
        to_old = local / prior if prior else None
        to_local = remote / local if local and remote is not None else None
        print(f"  {step:<24}{cell(prior):>12}{cell(local):>10}{cell(remote):>10}"
              f"{cell(to_old, 'x'):>11}{cell(to_local, 'x'):>10}")
        target = PUBLISH_TARGET if step.startswith("publish") else \
            WARM_TARGET if step in (WARM, generate_step) else None
        if target is not None and to_local is not None:
            verdicts.append(Verdict("bench_store", f"S3/local {step}", to_local, target,
                                    higher_is_better=False))
        if to_old is not None:
            old_verdicts.append(Verdict("bench_store", f"local/old {step}", to_old,
                                        OLD_TARGET, higher_is_better=False))
    for name, side in sides.items():
        for step, reason in side.skipped.items():
            print(f"  {LABELS[name]}: {step} skipped ({reason})")

    print(f"\n  S3 requests of one model publish + set_alias: {len(publish_requests)}, in "
          "order (a version's file uploads run in parallel, the rest one after another):")
    for method, path, status in publish_requests:
        print(f"    {method:<6} {path.removeprefix('/bench/store/')} {status}")
    most = max(downloads.values(), default=0)
    print(f"\n  objects of the dataset and model versions: {len(downloads)}; downloads per "
          f"object into one cache: {sorted(set(downloads.values()))} (GETs in the server's "
          "log)")
    for key, count in downloads.items():
        if count > 1:
            print(f"  downloaded {count} times into one cache: {key}")
    verdicts += old_verdicts
    verdicts.append(Verdict("bench_store", "most downloads of one file", most, 1,
                            higher_is_better=False, unit=""))
    print()
    for verdict in verdicts:
        print(verdict.line())
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
