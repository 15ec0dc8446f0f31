"""Soak test of the store: every pipeline operation at once, in several processes, with
random SIGKILLs, on a directory or on S3 (moto on 127.0.0.1); then check that nothing was
lost, duplicated or left dangling (issue item 5).

    .venv/bin/python -m benchmarks.soak_store --backend local --minutes 10 --seed 0
    .venv/bin/python -m benchmarks.soak_store --backend s3 --minutes 10 --seed 0

The parent starts a feed server (tests/feedserver.py, a thread) and, for s3, a moto server
(tests/s3server.py), publishes a base dataset, then runs worker processes
(``python -m benchmarks.soak_store --worker NAME``) until the time is up, SIGKILLing a
random one every few seconds and starting it again:

- ``ingest``: writes a small CSV of headlines no one else writes, records it in its ledger,
  then ingests it (`tasks.ingest.ingest_csvs`, what `charlm ingest` runs) and records the
  outcome. A CSV whose outcome is not recorded (killed, or failed) is ingested again first
  when the worker restarts, as an operator would rerun a failed command;
- ``feed``: `tasks.feeds.ingest_feeds` (what `charlm ingest-feed --no-drift` runs) on two
  feeds served by the parent, whose items grow all the time; small batches
  (``min_new``) so the buffer is published often;
- ``train``: `tasks.champion.train_challenger` (what `charlm train` runs: train a tiny GRU
  for one epoch, evaluate it and the champion on the test split, promote or keep by
  compare-and-swap) on the dataset alias ``base``, mostly warm-started from the champion
  (``--from champion``), so that challengers often win and promotions race. Every
  challenger is scored on the same split, so "the best of the models compared" is one
  comparison of numbers;
- ``generate``: `tasks.generate.generate_headlines` from the champion;
- ``gc``: ``Store(root).gc(keep=2, apply=True)`` every few seconds.

Every worker keeps a ledger (one JSON line per intent, outcome, error or race event,
written with one ``write(2)`` each, so a SIGKILL leaves whole lines). At the end the workers
are stopped (SIGKILL after a short grace), what they left pending is finished by the parent
(the unrecorded CSVs ingested again, one last feed poll that publishes everything waiting),
one last ``gc(keep=0, apply=True)`` removes everything no alias, pin or lineage keeps, and
the store is checked:

1. ``verify()`` finds nothing;
2. every alias of every kind resolves, and its files are whole;
3. the latest dataset holds every headline of the base, of every CSV written and of every
   item the feed server ever listed exactly once, and no other row. Every text is made
   unique, so "exactly once" is "one row with that headline": the dataset dedups identical
   (date, text) pairs, and an identical text on another date would be a second row;
4. every recorded ingest outcome is whole: a first attempt added all its rows, a retry all
   or none (a killed ingest committed everything or nothing);
5. the champion alias history is one unbroken chain of compare-and-swaps, each decision
   right by the numbers in its reason, taken against the champion of the moment, every
   recorded decision of a trainer is in it, and the champion's test bits/char is the lowest
   of every model compared;
6. every move of the champion alias in the commit log (``_log/``) is in the alias history,
   in order, and every champion the parent saw while sampling the alias is in it too.

Printed: operations per role, kills, races (log entries lost to another writer, i.e.
``WriteConflict`` on ``_log/``; publishes planned again because "latest" moved; champion
decisions compared again because the champion moved), gc runs and versions removed.
Exit status 1 when a check fails. `run_soak` is what tests/storage/test_soak.py runs, short.
With ``--workdir`` the evidence stays: each worker's ``workers/<name>/ledger.jsonl`` and
``output.log``, the commit log as read at the end (``log.jsonl``) and moto's request log.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))  # feedserver, s3server

ROLES = ("ingest", "feed", "train", "generate", "gc")
OK_OPS = {"ingest": "ingested", "feed": "polled", "train": "trained", "generate": "generated",
          "gc": "gc"}
WORDS = ("council", "flood", "rain", "market", "court", "police", "school", "bridge",
         "farmers", "budget", "fire", "storm", "hospital", "election", "river", "mine")
BASE_ALIAS = "base"  # the datasets alias every challenger trains on
FEEDS = ("/alpha.xml", "/beta.xml")
EVALUATION_SAMPLES = 20  # headlines generated per evaluation for its quality metrics
WARM_SHARE = 0.7  # of the trainings that start from the champion's weights


@dataclass
class SoakConfig:
    """What a soak run does; the defaults are the 10-minute run's."""

    backend: str = "local"  # "local" (a directory) or "s3" (moto on 127.0.0.1)
    minutes: float = 10.0  # of chaos; the run goes on (up to `grace_s`) until every role
    grace_s: float = 120.0  # has done one operation and two champion decisions were taken
    seed: int = 0
    workers: dict[str, int] = field(default_factory=lambda: {
        "ingest": 2, "feed": 2, "train": 2, "generate": 1, "gc": 1})
    kill_every_s: float = 5.0  # mean pause between two SIGKILLs (uniform 0.5x to 1.5x)
    # A TensorFlow worker takes 10-20 s to start on a loaded 2-core machine: killing one as
    # often as an ingester would leave no training done.
    kill_weights: dict[str, float] = field(default_factory=lambda: {
        "ingest": 1.0, "feed": 1.0, "gc": 1.0, "generate": 0.3, "train": 0.15})
    gc_every_s: float = 3.0
    gc_keep: int = 2
    # Uploads nobody committed are given up after this (the default is 7 days): short enough
    # that killed publishers' leftovers are abandoned during the run, long enough that no
    # live publish on a loaded machine is.
    gc_retention_s: float = 120.0
    # The feed lease (storage.feed_files.LEASE_S, 60 s) lapses this long after its holder
    # is killed; shorter, so that killed pollers do not stall the feeds for a minute.
    lease_s: float = 10.0
    feed_every_s: float = 1.0  # a new feed item about this often
    feed_error_rate: float = 0.05  # answers 503 to this share of polls
    feed_min_new: int = 3
    base_rows: int = 400
    stop_grace_s: float = 10.0  # after the stop file, before the SIGKILLs
    trainers_generate: bool = False  # a trainer generates from the champion after each decision
    kernels: bool = False  # charlm's fused kernels (compiled on first use, ~15 s): not needed
    workdir: str | None = None  # kept; a temporary folder (removed) when None

    @classmethod
    def short(cls, backend: str, seed: int = 0, workdir: str | None = None) -> SoakConfig:
        """The CI variant (tests/storage/test_soak.py): half a minute of chaos, then as long
        as it takes (up to 90 s more) for every role to work and two decisions to race. On
        2 shared cores a TensorFlow worker's start is most of such a run, so the trainers
        are not killed and generate from the champion themselves (no generator process);
        the 10-minute run kills them and has its own generator."""
        return cls(backend=backend, minutes=0.5, grace_s=90.0, seed=seed,
                   workers={"ingest": 2, "feed": 2, "train": 2, "gc": 1},
                   kill_every_s=5.0, kill_weights={"ingest": 1.0, "feed": 1.0, "gc": 1.0,
                                                   "train": 0.0},
                   trainers_generate=True, gc_every_s=2.0, gc_keep=1, feed_every_s=0.5,
                   base_rows=200, stop_grace_s=5.0, workdir=workdir)

    def worker_names(self) -> list[tuple[str, str]]:
        return [(f"{role}{i}", role) for role in ROLES for i in range(self.workers.get(role, 0))]


@dataclass
class SoakReport:
    """What a run did and what its checks found (`problems` empty: all passed)."""

    backend: str
    seed: int
    seconds: float = 0.0  # of chaos
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    ops: dict[str, Counter] = field(default_factory=dict)  # role -> {"ok": n, "failed": n}
    failures: Counter = field(default_factory=Counter)  # "role: error" -> n
    kills: Counter = field(default_factory=Counter)  # role -> SIGKILLs
    exits: Counter = field(default_factory=Counter)  # role -> exits nobody asked for
    races: Counter = field(default_factory=Counter)
    gc_runs: int = 0
    removed: Counter = field(default_factory=Counter)  # kind -> versions removed by gc
    final_gc: Counter = field(default_factory=Counter)  # kind -> removed by the last gc
    decisions: int = 0
    promotions: int = 0
    champion: str = ""
    log_entries: int = 0
    rows: Counter = field(default_factory=Counter)  # origin -> rows expected in latest
    feed_errors_served: int = 0
    feed_reissued: int = 0
    csv_repeats: int = 0  # rows written again (earlier rows, doubled rows)
    pins_left: int = 0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        ops = ", ".join(f"{role} {c['ok']}" + (f" (+{c['failed']} failed)" if c["failed"] else "")
                        for role, c in self.ops.items())
        kills = ", ".join(f"{role} {n}" for role, n in sorted(self.kills.items()))
        removed = ", ".join(f"{kind} {n}" for kind, n in sorted(self.removed.items()))
        lines = [
            f"soak {self.backend} (seed {self.seed}): {self.seconds:.0f} s of chaos ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items()) + ")",
            f"operations: {ops}",
            f"kills: {sum(self.kills.values())} ({kills or 'none'})"
            + (f"; unexpected exits: {dict(self.exits)}" if self.exits else ""),
            f"races: {self.races['log']} log entries lost to another writer (WriteConflict "
            f"on _log/), {self.races['latest']} publishes planned again (latest moved), "
            f"{self.races['champion']} champion decisions compared again (champion moved)",
            f"gc: {self.gc_runs} runs, {sum(self.removed.values())} versions removed"
            + (f" ({removed})" if removed else "")
            + f"; then gc --keep 0 removed {sum(self.final_gc.values())}",
            f"champion: {self.decisions} decisions, {self.promotions} promotions; "
            f"final {self.champion}",
            f"latest dataset: {sum(self.rows.values())} rows expected exactly once (base "
            f"{self.rows['base']}, csv {self.rows['csv']}, feed {self.rows['feed']}); "
            f"{self.csv_repeats} CSV rows written again, "
            f"{self.feed_reissued} feed items re-issued under a new guid, "
            f"{self.feed_errors_served} feed polls answered 503",
            f"log: {self.log_entries} entries; pins left by killed trainings: {self.pins_left}",
        ]
        if self.failures:
            lines.append("failed operations (by role and first line of the error):")
            lines += [f"  {n} x {what}" for what, n in self.failures.most_common()]
        lines.append("checks: " + ("all passed" if not self.problems else
                                   f"{len(self.problems)} FAILED"))
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        return lines


# -- ledgers ---------------------------------------------------------------------------


class Ledger:
    """A worker's append-only JSON-lines record. Each record is one write(2) on an O_APPEND
    descriptor: a SIGKILL lands between system calls, so a record is whole or absent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({"t": round(time.time(), 3), **record}, sort_keys=True) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Every whole record of a ledger (a torn last line, which one write(2) should never
    leave, is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def pending_ingests(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CSV intents of an ingester whose outcome is not recorded, oldest first."""
    done = {r["file"] for r in records if r["op"] == "ingested"}
    return [r for r in records if r["op"] == "ingest" and r["file"] not in done]


def one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    # Ids, numbers and paths differ between occurrences of one failure: group them.
    text = re.sub(r"\d{8}-\d{6}-\d{6}-[0-9a-f]{6}", "<id>", text)
    return re.sub(r"(/[\w.+-]+)+", "<path>", text)[:200]


# -- the feed server's content ---------------------------------------------------------


class FeedSource:
    """The soak's feeds: each path lists every item ever added to it (so an item is never
    missed for having slid out of a window), with an ETag that changes with each item, and
    answers 503 to a share of the polls while `failing`. Now and then an item is a story
    re-issued under a new guid (the title of an earlier item, maybe of the other feed):
    its headline must still be stored once."""

    def __init__(self, rng: random.Random, error_rate: float) -> None:
        self.items: dict[str, list[tuple[str, str, datetime]]] = {p: [] for p in FEEDS}
        self.errors_served = 0
        self.reissued = 0
        self.failing = True
        self._rng = rng
        self._error_rate = error_rate
        self._lock = threading.Lock()

    def grow(self) -> None:
        with self._lock:
            path = self._rng.choice(FEEDS)
            name = path.strip("/").split(".")[0]
            for _ in range(self._rng.randint(1, 3)):
                n = len(self.items[path])
                earlier = [title for items in self.items.values() for _, title, _ in items]
                if earlier and self._rng.random() < 0.1:
                    title = self._rng.choice(earlier)
                    self.reissued += 1
                else:
                    words = " ".join(self._rng.choice(WORDS) for _ in range(3))
                    title = f"soak feed {name} n{n} {words}"
                self.items[path].append((f"soak-{name}-{n}", title, datetime.now(timezone.utc)))

    def titles(self) -> dict[str, str]:
        """headline -> the item that first listed it, for every item ever listed."""
        with self._lock:
            first: dict[str, str] = {}
            for items in self.items.values():
                for guid, title, _ in items:
                    first.setdefault(title, f"feed {guid}")
            return first

    def route(self, path: str) -> Callable[[Any], Any]:
        from feedserver import Reply, rss, rss_item

        def answer(request: Any) -> Any:
            with self._lock:
                if self.failing and self._rng.random() < self._error_rate:
                    self.errors_served += 1
                    return Reply(503, b"try later", content_type="text/plain")
                items = list(self.items[path])
            etag = f'"{path.strip("/")}-{len(items)}"'
            if request.headers.get("if-none-match") == etag:
                return Reply(304, headers={"ETag": etag}, content_type=None)
            body = rss(rss_item(title, guid, f"http://example.invalid/{guid}", when)
                       for guid, title, when in items)
            return Reply(200, body, headers={"ETag": etag})

        return answer


# -- the parent ------------------------------------------------------------------------


class Worker:
    """One worker slot: its process (restarted after every kill) and its ledger."""

    def __init__(self, name: str, role: str, workdir: Path, env: dict[str, str]) -> None:
        self.name, self.role = name, role
        self.folder = workdir / "workers" / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.process: subprocess.Popen | None = None
        self.incarnation = 0

    def start(self, seed: int) -> None:
        self.incarnation += 1
        with open(self.folder / "output.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.soak_store", "--worker", self.name,
                 "--workdir", str(self.folder.parents[1]), "--incarnation",
                 str(self.incarnation), "--seed", str(seed)],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def records(self) -> list[dict[str, Any]]:
        return read_ledger(self.folder / "ledger.jsonl")


class Observer(threading.Thread):
    """Samples the champion alias and "latest" from the parent, as any reader would."""

    def __init__(self, root: str) -> None:
        super().__init__(daemon=True, name="soak-observer")
        self.root = root
        self.champions: list[str | None] = []
        self.errors: Counter = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        from storage import Store

        store = Store(self.root)
        while not self.stop.wait(0.25):
            try:
                champion = store.aliases("models").get("champion")
            except Exception as error:  # a reader must never fail: counted, checked
                self.errors[one_line(error)] += 1
                continue
            if not self.champions or self.champions[-1] != champion:
                self.champions.append(champion)


def run_soak(config: SoakConfig, say: Callable[[str], None] = print) -> SoakReport:
    """Run a soak (see the module docstring); the report, its `problems` empty when every
    check passed."""
    workdir = Path(config.workdir or tempfile.mkdtemp(prefix="charlm-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP",
                                            "CHARLM_CACHE")}
    servers: list[Any] = []
    workers: list[Worker] = []
    import storage.feed_files

    lease_s = storage.feed_files.LEASE_S
    storage.feed_files.LEASE_S = config.lease_s  # the parent's last poll waits as they do
    try:
        return _run(config, workdir, servers, workers, say)
    finally:
        storage.feed_files.LEASE_S = lease_s
        for worker in workers:
            worker.kill()
        for server in reversed(servers):
            server.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if config.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(config: SoakConfig, workdir: Path, servers: list[Any], workers: list[Worker],
         say: Callable[[str], None]) -> SoakReport:
    from feedserver import FeedServer

    rng = random.Random(config.seed)
    report = SoakReport(config.backend, config.seed)
    clock = time.monotonic()
    feed_server = FeedServer()
    servers.append(feed_server)
    source = FeedSource(random.Random(rng.randrange(2**32)), config.feed_error_rate)
    urls = [feed_server.serve(path, source.route(path)) for path in FEEDS]
    if config.backend == "s3":
        from s3server import S3Server

        s3 = S3Server(log_path=workdir / "moto.log")
        servers.append(s3)
        os.environ.update(s3.env)
        root = s3.bucket()
    elif config.backend == "local":
        root = str(workdir / "store")
    else:
        raise ValueError(f"backend must be local or s3, got {config.backend!r}")
    os.environ["CHARLM_CACHE"] = str(workdir / "cache")  # one host cache, shared (s3)
    (workdir / "stop").unlink(missing_ok=True)
    names = config.worker_names()
    (workdir / "soak.json").write_text(json.dumps({
        "root": root, "urls": urls, "parent": os.getpid(), "roles": dict(names),
        "config": asdict(config)}, indent=1))

    base_id, base_rows = _publish_base(root, workdir, config.base_rows, rng)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": "", "CHARLM_KERNELS": "1" if config.kernels else "0"}
    workers += [Worker(name, role, workdir, env) for name, role in names]
    for worker in workers:
        worker.start(rng.randrange(2**32))
    observer = Observer(root)
    observer.start()
    report.phases["setup"] = time.monotonic() - clock
    say(f"soak {config.backend}: {len(workers)} workers on {root}, {config.minutes:g} min")

    started = time.monotonic()
    deadline = started + config.minutes * 60
    next_kill = started + _interval(rng, config.kill_every_s)
    next_item = started
    next_status = started + 60
    weights = [config.kill_weights.get(w.role, 1.0) for w in workers]
    while True:
        now = time.monotonic()
        if now >= deadline and (_enough(workers) or now >= deadline + config.grace_s):
            break
        if now >= next_item:
            source.grow()
            next_item = now + _interval(rng, config.feed_every_s)
        for worker in workers:
            if worker.process.poll() is not None:  # exited without our kill: count, restart
                report.exits[f"{worker.role} rc {worker.process.returncode}"] += 1
                worker.start(rng.randrange(2**32))
        if now >= next_kill:
            victim = rng.choices(workers, weights)[0]
            victim.kill()
            report.kills[victim.role] += 1
            victim.start(rng.randrange(2**32))
            next_kill = now + _interval(rng, config.kill_every_s)
        if now >= next_status:
            say(f"  {now - started:.0f} s: " + ", ".join(
                f"{role} {c['ok']}" for role, c in _ops(workers).items())
                + f"; {sum(report.kills.values())} kills")
            next_status = now + 60
        time.sleep(0.1)
    report.seconds = time.monotonic() - started

    # Stop: a short grace for the operations under way, then SIGKILL (the checks must hold
    # either way); the feeds stop growing and failing, then what was left pending is done.
    clock = time.monotonic()
    (workdir / "stop").write_text("stop\n")
    grace_end = time.monotonic() + config.stop_grace_s
    while time.monotonic() < grace_end and any(w.process.poll() is None for w in workers):
        time.sleep(0.2)
    for worker in workers:
        worker.kill()
    source.failing = False
    observer.stop.set()
    observer.join()
    say(f"soak {config.backend}: stopped after {report.seconds:.0f} s; finishing what the "
        "workers left pending")
    try:
        _finish_pending(root, urls, workers)
        report.final_gc = Counter(kind for kind, _ in _final_gc(root))
    except Exception as error:  # the checks still run: they say what went wrong
        report.problems.append(f"finishing the pending work failed: {one_line(error)}")
    report.phases["stop and finish"] = time.monotonic() - clock
    clock = time.monotonic()
    _collect(report, workers, source, observer)
    report.problems += _check(root, base_id, base_rows, workers, source, observer, report,
                              workdir)
    report.phases["checks"] = time.monotonic() - clock
    return report


def _interval(rng: random.Random, mean: float) -> float:
    return rng.uniform(0.5 * mean, 1.5 * mean)


def _ops(workers: list[Worker]) -> dict[str, Counter]:
    """role -> {"ok": operations done, "failed": operations failed}, in `ROLES` order; a
    trainer's generations count as the generate role's."""
    ops: dict[str, Counter] = {w.role: Counter(ok=0, failed=0) for w in workers}
    done = {op: role for role, op in OK_OPS.items()}
    for worker in workers:
        for record in worker.records():
            if record["op"] in done:
                ops.setdefault(done[record["op"]], Counter(ok=0, failed=0))["ok"] += 1
            elif record["op"] == "error":
                ops.setdefault(record["what"], Counter(ok=0, failed=0))["failed"] += 1
    return {role: ops[role] for role in ROLES if role in ops}


def _enough(workers: list[Worker]) -> bool:
    """Whether every role did one operation and the trainers took two decisions (a race
    needs two), so that a short run on a slow machine still exercises everything."""
    ops = _ops(workers)
    trainers = sum(w.role == "train" for w in workers)
    return (all(c["ok"] > 0 for c in ops.values())
            and ops.get("train", Counter(ok=2))["ok"] >= min(2, 2 * trainers))


def _publish_base(root: str, workdir: Path, rows: int, rng: random.Random
                  ) -> tuple[str, dict[str, str]]:
    """The dataset every challenger trains on, aliased `BASE_ALIAS`; its id and rows."""
    from storage import Store
    from tasks.ingest import ingest_csvs

    texts = {f"soak base n{i} " + " ".join(rng.choice(WORDS) for _ in range(4)): "base"
             for i in range(rows)}
    path = workdir / "base.csv"
    _write_csv(path, ([_date(rng), text] for text in texts))
    outcome = ingest_csvs.fn(root, [str(path)])
    Store(root).set_alias("datasets", BASE_ALIAS, outcome.dataset_id,
                          reason="soak: the dataset every challenger trains on")
    return outcome.dataset_id, texts


def _date(rng: random.Random) -> str:
    return f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"


def _write_csv(path: Path, rows: Iterable[list[str]]) -> None:
    """A headline CSV of [date, text] rows."""
    lines = [f"{date},{text}" for date, text in rows]
    path.write_text("publish_date,headline_text\n" + "\n".join(lines) + "\n")


def _finish_pending(root: str, urls: list[str], workers: list[Worker]) -> None:
    """What the killed workers left undone, as an operator would finish it: CSVs whose
    ingest outcome is not recorded are ingested again (recorded in the ingester's ledger),
    and one last poll publishes every feed item still waiting."""
    from tasks.feeds import ingest_feeds
    from tasks.ingest import ingest_csvs

    for worker in workers:
        if worker.role != "ingest":
            continue
        ledger = Ledger(worker.folder / "ledger.jsonl")
        for intent in pending_ingests(worker.records()):
            outcome = ingest_csvs.fn(root, [intent["file"]])
            ledger.write({"op": "ingested", "file": intent["file"], "by": "parent",
                          "dataset": outcome.dataset_id, "published": outcome.published,
                          "new_rows": outcome.new_rows, "retry": True})
    run = ingest_feeds(root, urls, min_new=1, max_wait_hours=0.0, drift=False)
    run.raise_for_errors()


def _final_gc(root: str) -> list[tuple[str, str]]:
    """The strictest gc there is, once nothing runs: every version but what an alias, a pin
    or the lineage of those keeps. The checks then run on what it left."""
    from storage import Store

    return Store(root).gc(keep=0, apply=True)


def _collect(report: SoakReport, workers: list[Worker], source: FeedSource,
             observer: Observer) -> None:
    report.ops = _ops(workers)
    for worker in workers:
        for record in worker.records():
            op = record["op"]
            if op == "error":
                report.failures[f"{worker.role}: {record['error']}"] += 1
            elif op == "event":
                report.races[record["event"]] += 1
            elif op == "gc":
                report.gc_runs += 1
                report.removed.update(record["removed"])
    report.feed_errors_served = source.errors_served
    report.feed_reissued = source.reissued
    if observer.errors:
        report.failures.update({f"observer: {k}": n for k, n in observer.errors.items()})


# -- the checks ------------------------------------------------------------------------


def _check(root: str, base_id: str, base_rows: dict[str, str], workers: list[Worker],
           source: FeedSource, observer: Observer, report: SoakReport,
           workdir: Path) -> list[str]:
    """Every check of the module docstring; a check that cannot even run (a missing alias,
    say) is a problem too."""
    from storage import Store

    store = Store(root)
    problems = [f"{n} unexpected exit(s) of a worker ({what}): see its output.log"
                for what, n in report.exits.items()]
    checks: list[tuple[str, Callable[[], list[str]]]] = [
        ("verify", lambda: [f"verify: {p}" for p in store.verify()]),
        ("aliases", lambda: _check_aliases(store)),
        ("rows", lambda: _check_rows(store, base_rows, workers, source, report)),
        ("champion", lambda: _check_champion(store, base_id, workers, observer, report,
                                             workdir)),
    ]
    for name, check in checks:
        try:
            problems += check()
        except Exception as error:
            problems.append(f"the {name} check could not run: {one_line(error)}")
    report.pins_left = len(store.pins())
    return problems


def _check_aliases(store: Any) -> list[str]:
    from storage import KINDS

    problems = []
    for kind in KINDS:
        for name, target in store.aliases(kind).items():
            try:
                if store.resolve(kind, name) != target:
                    problems.append(f"{kind} alias {name!r} resolves to another version")
                store.path(kind, name)  # its files, checksums verified
            except Exception as error:
                problems.append(f"{kind} alias {name!r} -> {target}: {one_line(error)}")
    return problems


def _check_rows(store: Any, base_rows: dict[str, str], workers: list[Worker],
                source: FeedSource, report: SoakReport) -> list[str]:
    from storage.datasets import read_headlines

    ingests = [(w.name, r) for w in workers if w.role == "ingest" for r in w.records()]
    expected = dict(base_rows)
    for name, record in ingests:
        if record["op"] == "ingest":
            expected.update({t: f"{name} {Path(record['file']).name}"
                             for _, t in record["rows"]})
    feed_titles = source.titles()
    expected.update(feed_titles)
    report.rows.update(base=len(base_rows), feed=len(feed_titles),
                       csv=len(expected) - len(base_rows) - len(feed_titles))
    report.csv_repeats = sum(r.get("repeats", 0) + r.get("doubled", 0) for _, r in ingests
                             if r["op"] == "ingest")
    problems = check_ingest_outcomes([r for _, r in ingests])
    latest = store.path("datasets", "latest")
    texts = read_headlines(latest).select("headline").collect()["headline"].to_list()
    return problems + check_rows(texts, expected)


def _check_champion(store: Any, base_id: str, workers: list[Worker], observer: Observer,
                    report: SoakReport, workdir: Path) -> list[str]:
    history = store.alias_history("models", "champion")
    decisions = [r for w in workers if w.role == "train" for r in w.records()
                 if r["op"] == "trained"]
    report.decisions = len(history)
    report.promotions = sum(1 for r in history if r["id"] != r["previous"])
    champion = store.aliases("models").get("champion")
    report.champion = f"{champion} ({_bpc_of(history, champion)} bits/char)" if champion \
        else "none"
    entries = _log_entries(store)
    report.log_entries = len(entries)
    # The log, for whoever looks into a failed run: an S3 store dies with its moto server.
    (workdir / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return (check_champion(history, decisions, champion, base_id)
            + check_log(entries, history) + check_observed(observer.champions, history))


def _log_entries(store: Any) -> list[dict[str, Any]]:
    """Every entry of the commit log, in order (checkpoints left out)."""
    from storage import log

    seqs = sorted(seq for seq, checkpoint in filter(None, (
        log.parse_seq(i.key) for i in store.backend.list(f"{log.LOG_DIR}/"))) if not checkpoint)
    return [json.loads(store.backend.get(log.entry_key(seq))[0]) for seq in seqs]


def check_rows(texts: list[str], expected: dict[str, str]) -> list[str]:
    """Problems with the latest dataset's headlines `texts` given `expected` (every text
    that must be there exactly once -> where it came from): texts missing, held twice or
    more, or not expected at all."""
    counts = Counter(texts)
    missing = [f"{t!r} ({where})" for t, where in expected.items() if counts[t] == 0]
    twice = [f"{t!r} x{n} ({expected.get(t, '?')})" for t, n in counts.items() if n > 1]
    stray = [repr(t) for t in counts if t not in expected]
    problems = []
    for what, found in (("missing from the latest dataset", missing),
                        ("in the latest dataset more than once", twice),
                        ("in the latest dataset but never written", stray)):
        if found:
            problems.append(f"{len(found)} headline(s) {what}: {', '.join(found[:5])}"
                            + (", ..." if len(found) > 5 else ""))
    return problems


def check_ingest_outcomes(records: list[dict[str, Any]]) -> list[str]:
    """Every recorded outcome of a CSV ingest is whole: the first attempt at a file added
    each of its rows (they are new), a later one all of them or none (the killed attempt
    committed everything or nothing)."""
    rows = {r["file"]: len(r["rows"]) for r in records if r["op"] == "ingest"}
    tried: Counter = Counter(r["file"] for r in records if r["op"] == "error")
    problems = []
    for record in records:
        if record["op"] != "ingested":
            continue
        n, added = rows.get(record["file"]), record["new_rows"]
        retry = record.get("retry") or tried[record["file"]] > 0
        if n is None:
            problems.append(f"ingest of {record['file']} recorded with no intent")
        elif added != n and not (retry and added == 0):
            problems.append(f"ingest of {Path(record['file']).name} added {added} of its "
                            f"{n} rows ({'a retry' if retry else 'first attempt'})")
    if len(problems) > 5:
        problems[5:] = [f"... and {len(problems) - 5} more ingest(s) that were not whole"]
    return problems


_ID = r"(\d{8}-\d{6}-\d{6}-[0-9a-f]{6})"
_FIRST = re.compile(rf"first model: {_ID} (\S+) bits/char on the test split of dataset {_ID}")
_VERSUS = re.compile(rf"challenger {_ID} (\S+) vs champion {_ID} (\S+) bits/char on the test "
                     rf"split of dataset {_ID}: (promoted|champion kept)")


def _bpc_of(history: list[dict[str, Any]], model: str | None) -> str:
    """The test bits/char a reason in `history` gives `model` ("?" if none)."""
    for record in reversed(history):
        for pattern, (id_at, bpc_at) in ((_FIRST, (1, 2)), (_VERSUS, (1, 2)),
                                         (_VERSUS, (3, 4))):
            match = pattern.match(record.get("reason", ""))
            if match and match.group(id_at) == model:
                return match.group(bpc_at)
    return "?"


def check_champion(history: list[dict[str, Any]], decisions: list[dict[str, Any]],
                   champion: str | None, dataset: str) -> list[str]:
    """The champion alias's history is one chain of decisions, each right and taken
    against the champion of its moment, on `dataset`'s test split; every trainer's
    recorded decision (`decisions`, ledger records) is in it; and `champion` has the lowest
    test bits/char of every model compared (ties: the reasons print 4 decimals)."""
    problems: list[str] = []
    scores: dict[str, float] = {}
    previous = None
    for n, record in enumerate(history):
        where = f"champion history record {n} ({record['id']})"
        if record["previous"] != previous:
            problems.append(f"{where}: follows {record['previous']}, but the champion was "
                            f"{previous}")
        previous = record["id"]
        reason = record.get("reason", "")
        first, versus = _FIRST.match(reason), _VERSUS.match(reason)
        if first:
            model, bpc, split = first.group(1), float(first.group(2)), first.group(3)
            scores[model] = bpc
            if record["previous"] is not None:
                problems.append(f"{where}: crowned unopposed over {record['previous']}")
            if record["id"] != model:
                problems.append(f"{where}: names {model} but crowned {record['id']}")
        elif versus:
            model, bpc, held, held_bpc, split, verdict = versus.groups()
            bpc, held_bpc = float(bpc), float(held_bpc)
            scores.update({model: bpc, held: held_bpc})
            if held != record["previous"]:
                problems.append(f"{where}: compared with {held}, not the champion "
                                f"{record['previous']}")
            winner = model if verdict == "promoted" else held
            if record["id"] != winner:
                problems.append(f"{where}: {verdict} but the alias went to {record['id']}")
            if (verdict == "promoted") != (bpc < held_bpc) and bpc != held_bpc:
                problems.append(f"{where}: {verdict} with {bpc} vs {held_bpc} bits/char")
        else:
            problems.append(f"{where}: a decision the soak cannot read: {reason!r}")
            continue
        if split != dataset:
            problems.append(f"{where}: scored on dataset {split}, not {dataset}")
    if champion != previous:
        problems.append(f"the champion is {champion}, its history ends at {previous}")
    for decision in decisions:
        model, promoted = decision["model"], decision["promoted"]
        if decision.get("challenger_bpc") is not None:
            scores.setdefault(model, round(decision["challenger_bpc"], 4))
        found = any((r["id"] == model) == promoted and model in r.get("reason", "")
                    for r in history)
        if not found and (promoted or decision.get("champion") is not None):
            problems.append(f"trainer's decision on model {model} (promoted: {promoted}) "
                            "is not in the champion history")
    if scores and champion is not None:
        best = min(scores.values())
        if scores.get(champion, float("inf")) > best:
            better = [m for m, s in scores.items() if s == best]
            problems.append(f"champion {champion} ({scores.get(champion)} bits/char) is not "
                            f"the best of the {len(scores)} models compared: {better[0]} "
                            f"has {best}")
    return problems


def check_log(entries: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[str]:
    """The log is numbered without a gap, and every move of the champion alias in it is a
    recorded move, in the alias history's order."""
    problems = [f"log entry {n} is numbered {e.get('seq')}" for n, e in enumerate(entries)
                if e.get("seq") != n][:5]
    moves = []
    champion = None
    for entry in entries:
        for action in entry.get("actions", []):
            if action.get("kind") != "models":
                continue
            if action.get("op") == "alias" and action.get("name") == "champion":
                champion = action["id"]
                moves.append((champion, bool(action.get("record"))))
            elif action.get("op") in ("remove", "abandon") and champion in action["ids"]:
                # Removing a version drops the aliases on it: gc must never plan that.
                problems.append(f"log entry {entry.get('seq')} removes the champion "
                                f"{champion}")
                champion = None
    unrecorded = [m for m, recorded in moves if not recorded]
    if unrecorded:
        problems.append(f"{len(unrecorded)} champion move(s) in the log without a history "
                        f"record: {unrecorded[:3]}")
    if [m for m, _ in moves] != [r["id"] for r in history]:
        problems.append(f"the log moves the champion {len(moves)} times, the history "
                        f"records {len(history)}")
    return problems


def check_observed(observed: list[str | None], history: list[dict[str, Any]]) -> list[str]:
    """Every champion a reader saw, in the order seen, is one the history records."""
    chain = [None] + [r["id"] for r in history]
    position = 0
    for champion in observed:
        while position < len(chain) and chain[position] != champion:
            position += 1
        if position == len(chain):
            return [f"a reader saw champion {champion}, which the alias history does not "
                    "record at that point"]
    return []


# -- the workers -----------------------------------------------------------------------


class Context:
    """What a worker process knows: its slot, the store, its ledger, when to stop."""

    def __init__(self, workdir: Path, name: str, incarnation: int, seed: int) -> None:
        spec = json.loads((workdir / "soak.json").read_text())
        self.config = SoakConfig(**spec["config"])
        self.name, self.role = name, spec["roles"][name]
        self.root, self.urls = spec["root"], spec["urls"]
        self.incarnation = incarnation
        self.rng = random.Random(seed)
        self.folder = workdir / "workers" / name
        self.ledger = Ledger(self.folder / "ledger.jsonl")
        self._stop = workdir / "stop"
        self._parent = spec["parent"]

    def running(self) -> bool:
        return not self._stop.exists() and os.getppid() == self._parent

    def nap(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.running() and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def failed(self, what: str, error: BaseException, **fields: Any) -> None:
        self.ledger.write({"op": "error", "what": what, "error": one_line(error), **fields})


class _RaceLog(logging.Handler):
    """Ledger events for the races the operations log: a publish planned again because
    "latest" moved (tasks.ingest), a decision compared again because the champion moved
    (tasks.champion)."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(logging.INFO)
        self.ledger = ledger

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "planning again" in message:
            self.ledger.write({"op": "event", "event": "latest"})
        elif "the champion moved from" in message:
            self.ledger.write({"op": "event", "event": "champion"})


def _instrument(context: Context) -> None:
    import storage.feed_files
    from storage.backend import DirectoryBackend, ObstoreBackend, WriteConflict

    storage.feed_files.LEASE_S = context.config.lease_s

    def counted(put: Any) -> Any:
        def put_counted(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return put(self, key, *args, **kwargs)
            except WriteConflict:
                if key.startswith("_log/"):  # a log entry another writer took first
                    context.ledger.write({"op": "event", "event": "log"})
                raise
        return put_counted

    for backend in (DirectoryBackend, ObstoreBackend):
        backend.put = counted(backend.put)
    logger = logging.getLogger("charlm")
    logger.setLevel(logging.INFO)
    logger.addHandler(_RaceLog(context.ledger))


def worker_main(workdir: Path, name: str, incarnation: int, seed: int) -> None:
    context = Context(workdir, name, incarnation, seed)
    _instrument(context)
    context.ledger.write({"op": "start", "incarnation": incarnation})
    {"ingest": _ingest_loop, "feed": _feed_loop, "train": _train_loop,
     "generate": _generate_loop, "gc": _gc_loop}[context.role](context)


def _ingest_loop(context: Context) -> None:
    from tasks.common import run_task
    from tasks.ingest import ingest_csvs

    count = 0
    while context.running():
        records = read_ledger(context.ledger.path)
        pending = pending_ingests(records)
        if pending:
            intent, retry = pending[0], True
        else:
            count += 1
            intent, retry = _new_csv(context, count, records), False
            context.ledger.write(intent)
        try:
            outcome = run_task(ingest_csvs, context.root, [intent["file"]])
        except Exception as error:  # e.g. "latest" kept moving: the file stays pending
            context.failed("ingest", error, file=intent["file"])
            context.nap(context.rng.uniform(0.2, 1.0))
            continue
        context.ledger.write({"op": "ingested", "file": intent["file"], "retry": retry,
                              "dataset": outcome.dataset_id, "published": outcome.published,
                              "new_rows": outcome.new_rows})
        context.nap(context.rng.uniform(0.1, 0.6))


def _new_csv(context: Context, count: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the next CSV and return its intent: `rows` ([date, text], texts no one wrote
    before), plus rows that make the dataset's dedup work, as overlapping exports do: some
    rows of this worker's ingested CSVs (same date and text: the same headline) and a row
    written twice in the file. Only `rows` can be new."""
    rng = context.rng
    rows = [[_date(rng), f"soak {context.name} r{context.incarnation} n{count} k{k} "
             + " ".join(rng.choice(WORDS) for _ in range(3))]
            for k in range(rng.randint(3, 12))]
    ingested = {r["file"] for r in records if r["op"] == "ingested"}
    earlier = [row for r in records if r["op"] == "ingest" and r["file"] in ingested
               for row in r["rows"]]
    repeats = rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))
    doubled = rows[:1] if rng.random() < 0.3 else []
    lines = rows + repeats + doubled
    rng.shuffle(lines)
    path = context.folder / f"r{context.incarnation}-n{count}.csv"
    _write_csv(path, lines)  # whole before the ledger names it
    return {"op": "ingest", "file": str(path), "rows": rows, "repeats": len(repeats),
            "doubled": len(doubled)}


def _feed_loop(context: Context) -> None:
    from tasks.feeds import ingest_feeds

    while context.running():
        try:
            run = ingest_feeds(context.root, context.urls, context.config.feed_min_new,
                               max_wait_hours=0.002, drift=False)
        except Exception as error:
            context.failed("feed", error)
        else:
            context.ledger.write({"op": "polled", "dataset": run.dataset_id,
                                  "new": sum(r.counts.new for r in run.feeds if r.counts),
                                  "feed_errors": len(run.errors)})
        context.nap(context.rng.uniform(0.2, 1.0))


def _train_loop(context: Context) -> None:
    import tasks.evaluate
    from charlm.config import ModelConfig, TrainConfig
    from storage import Store
    from tasks.champion import train_challenger
    from tasks.warm import start_network

    # An evaluation's quality sample (1,000 generated headlines by default) is most of a
    # tiny model's evaluation time and none of the store's work: a few keep its code path.
    scorer = tasks.evaluate.evaluate_model.fn
    scorer.__defaults__ = (*scorer.__defaults__[:-1], EVALUATION_SAMPLES)
    store = Store(context.root)
    while context.running():
        records = read_ledger(context.ledger.path)
        done = {r["seed"] for r in records if r["op"] in ("trained", "error")}
        pending = [r["seed"] for r in records if r["op"] == "train" and r["seed"] not in done]
        # A run killed mid-way is run again: its checkpoints resume it (tasks.train) when it
        # starts from the same model.
        seed = pending[-1] if pending else context.rng.randrange(2**30)
        if not pending:
            context.ledger.write({"op": "train", "seed": seed})
        network = ModelConfig(cell="gru", hidden=8 if seed % 2 else 16, depth=1, embedding=8,
                              dropout=0.0, seed=seed)
        training = TrainConfig(batch_size=16, epochs=1, max_minutes=3.0, seed=seed,
                               validation_limit=200)
        # Mostly warm from the champion (`charlm train --from champion`): such a challenger
        # usually beats it, so promotions are frequent and trainers race to make them.
        champion = store.aliases("models").get("champion")
        start = None
        if champion is not None and context.rng.random() < WARM_SHARE:
            try:
                start, network = start_network(context.root, champion, {"seed": seed})
            except ValueError as error:  # dethroned and removed since we read the alias
                context.failed("train", error, seed=seed)
                continue
        try:
            challenge = train_challenger(context.root, BASE_ALIAS, network, training,
                                         "float32", start_from=start)
        except Exception as error:
            context.failed("train", error, seed=seed)
            context.nap(1.0)
            continue
        context.ledger.write({
            "op": "trained", "seed": seed, "model": challenge.trained.model_id,
            "start": start, "challenger_bpc": challenge.challenger_bpc,
            "promoted": challenge.promoted,
            "champion": challenge.champion.model_id if challenge.champion else None,
            "champion_bpc": challenge.champion_bpc})
        if context.config.trainers_generate:
            _generate_once(context)


def _generate_loop(context: Context) -> None:
    while context.running():
        _generate_once(context)
        context.nap(context.rng.uniform(0.5, 1.5))


def _generate_once(context: Context) -> None:
    """Four headlines from the champion, if there is one, as `charlm generate` makes them."""
    from charlm.config import SampleConfig
    from storage import Store
    from tasks.generate import generate_headlines

    if "champion" not in Store(context.root).aliases("models"):
        context.nap(1.0)
        return
    sampling = SampleConfig(seed=context.rng.randrange(2**30), max_new_chars=40)
    try:
        outcome = generate_headlines(context.root, "champion", 4, sampling)
    except Exception as error:
        context.failed("generate", error)
    else:
        context.ledger.write({"op": "generated", "generation": outcome.generation_id,
                              "model": outcome.model_id})


def _gc_loop(context: Context) -> None:
    from storage import Store

    config = context.config
    while context.running():
        context.nap(_interval(context.rng, config.gc_every_s))
        if not context.running():
            break
        try:
            removed = Store(context.root).gc(config.gc_keep, apply=True,
                                             retention_s=config.gc_retention_s)
        except Exception as error:
            context.failed("gc", error)
            continue
        context.ledger.write({"op": "gc", "removed": dict(Counter(k for k, _ in removed))})


# -- the command line ------------------------------------------------------------------


def parse_workers(text: str) -> dict[str, int]:
    """"ingest=2,feed=2,train=2,generate=1,gc=1" -> {role: count}."""
    workers = {}
    for part in filter(None, text.split(",")):
        role, _, count = part.partition("=")
        if role not in ROLES or not count.isdigit():
            raise argparse.ArgumentTypeError(f"bad worker spec {part!r}: ROLE=COUNT, ROLE "
                                             f"one of {', '.join(ROLES)}")
        workers[role] = int(count)
    return workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=parse_workers,
                        default="ingest=2,feed=2,train=2,generate=1,gc=1")
    parser.add_argument("--kill-every", type=float, default=5.0, help="mean seconds")
    parser.add_argument("--short", action="store_true",
                        help="the CI variant (SoakConfig.short): --minutes etc. ignored")
    parser.add_argument("--workdir", help="kept after the run (default: a temporary folder)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a worker process's slot
    parser.add_argument("--incarnation", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(Path(args.workdir), args.worker, args.incarnation, args.seed)
        return 0
    if "PREFECT_HOME" not in os.environ:
        # Prefect's home (read when it is imported, here and in the workers) in a folder of
        # the run rather than the user's ~/.prefect.
        home = tempfile.mkdtemp(prefix="charlm-soak-prefect-")
        atexit.register(shutil.rmtree, home, True)
        os.environ["PREFECT_HOME"] = home
    config = (SoakConfig.short(args.backend, args.seed, args.workdir) if args.short else
              SoakConfig(backend=args.backend, minutes=args.minutes, seed=args.seed,
                         workers=args.workers, kill_every_s=args.kill_every,
                         workdir=args.workdir))
    report = run_soak(config)
    print("\n".join(report.lines()), flush=True)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
