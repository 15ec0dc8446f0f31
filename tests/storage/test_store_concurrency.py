"""Concurrent publishers and the cleanup of staging directories left by dead processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage import Store
from storage.owners import FOREIGN_LEASE_S, host_id

ROUNDS = 40


def publish_many(root: str, worker: int, rounds: int, start) -> list[str]:
    store = Store(root)
    start.wait()  # both processes begin together to maximise overlap
    ids = []
    for i in range(rounds):
        with store.publish("models", params={"worker": worker, "i": i}) as staging:
            for name in ("a.bin", "b.bin"):
                (staging.path / name).write_bytes(f"{worker}-{i}-{name}".encode() * 100)
        ids.append(staging.id)
    return ids


def test_two_processes_publishing_concurrently(tmp_path):
    root = str(tmp_path / "store")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(2)
        with context.Pool(2) as pool:
            results = [
                pool.apply_async(publish_many, (root, worker, ROUNDS, start)) for worker in (0, 1)
            ]
            ids = [result.get(timeout=120) for result in results]
    store = Store(root)
    all_ids = ids[0] + ids[1]
    assert len(set(all_ids)) == 2 * ROUNDS
    assert sorted(m["id"] for m in store.versions("models")) == sorted(all_ids)
    for worker, worker_ids in enumerate(ids):
        for i, version_id in enumerate(worker_ids):
            assert store.manifest("models", version_id)["params"] == {"worker": worker, "i": i}
            path = store.path("models", version_id)  # verifies checksums
            assert (path / "a.bin").read_bytes() == f"{worker}-{i}-a.bin".encode() * 100
    # The two publishers really overlapped: their versions interleave in creation order.
    owners = [0 if m["id"] in ids[0] else 1 for m in store.versions("models")]
    assert sum(owners[i] != owners[i + 1] for i in range(len(owners) - 1)) > 1
    assert store.resolve("models", "latest") in {ids[0][-1], ids[1][-1]}
    assert store.verify() == []
    assert os.listdir(Path(root) / "models" / ".staging") == []


HOLD_OPEN = """
import sys, time
from storage import Store
from storage.owners import FOREIGN_LEASE_S, host_id
store = Store(sys.argv[1])
with store.publish("models") as staging:
    (staging.path / "half.bin").write_bytes(b"x" * 1000)
    print(staging.path, flush=True)
    time.sleep(60)
"""


def start_publisher(spawn_python, root: Path) -> tuple[subprocess.Popen, Path]:
    """A child process that is inside publish() with a half-written staging directory."""
    child = spawn_python(HOLD_OPEN, root)
    staging = Path(child.stdout.readline().strip())
    assert staging.is_dir(), staging
    return child, staging


def test_clean_staging_spares_live_publisher_and_removes_dead_ones(store, spawn_python):
    child, staging = start_publisher(spawn_python, store.root)
    try:
        assert store.clean_staging() == 0
        # A publish in this process must not disturb the other process's work either.
        with store.publish("models") as mine:
            (mine.path / "w").write_bytes(b"w")
        assert staging.is_dir() and (staging / "half.bin").is_file()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert staging.is_dir()  # killed: nothing cleaned it up...
    assert store.clean_staging() == 1  # ...until now
    assert not staging.exists()
    assert os.listdir(store.root / "models" / ".staging") == []
    assert [m["id"] for m in store.versions("models")] == [mine.id]
    assert store.verify() == []


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def age(path: Path, seconds: float) -> None:
    """Make `path` and everything in it look untouched for `seconds`."""
    when = time.time() - seconds
    for item in [*path.rglob("*"), path]:
        os.utime(item, (when, when))


def test_clean_staging_without_lock_file_uses_owner_and_age(store, publish):
    publish("models")
    staging_root = store.root / "models" / ".staging"
    here, dead = host_id(), dead_pid()
    cases = [  # (owner tag, a gc's trash?, seconds untouched, removed?)
        (f"{dead}@{here}", False, 0, True),  # a dead process of this host
        (f"{os.getppid()}@{here}", False, 0, False),  # a live one
        (f"{os.getppid()}@{here}", True, 2 * 3600, True),  # live pid, but idle for hours
        (f"{dead}@other-host", False, 0, False),  # another host's pid says nothing here
        (f"{dead}@other-host", True, FOREIGN_LEASE_S + 60, True),  # past the lease
        (f"{dead}", False, 0, False),  # old name, bare pid: unknown host, as another host's
        (f"{dead}", True, FOREIGN_LEASE_S + 60, True),
    ]
    kept = []
    for number, (tag, trash, idle_s, removed) in enumerate(cases):
        directory = staging_root / (f"20000101-000000-00000{number}-abcdef.{tag}"
                                    + (".gc" if trash else ""))
        directory.mkdir()
        (directory / "f").write_text("x")
        age(directory, idle_s)
        if not removed:
            kept.append(directory.name)
    assert store.clean_staging() == len(cases) - len(kept)
    assert sorted(os.listdir(staging_root)) == sorted(kept)


def test_clean_staging_removes_only_abandoned_alias_temp_files(store, publish):
    publish("models")
    aliases_dir = store.root / "models" / ".aliases"
    here, dead = host_id(), dead_pid()
    live = aliases_dir / f".latest.{os.getpid()}@{here}.0123abcd.tmp"
    mine_dead = aliases_dir / f".latest.{dead}@{here}.0123abcd.tmp"
    foreign = aliases_dir / f".latest.{dead}@other-host.0123abcd.tmp"
    foreign_old = aliases_dir / f".latest.{dead}@other-host.4567abcd.tmp"
    bare = aliases_dir / f".latest.{dead}.0123abcd.tmp"  # written by an older version
    bare_old = aliases_dir / f".latest.{dead}.4567abcd.tmp"
    for path in (live, mine_dead, foreign, foreign_old, bare, bare_old):
        path.write_text("x")
    for path in (foreign_old, bare_old):
        age(path, FOREIGN_LEASE_S + 60)
    store.clean_staging()
    assert sorted(p.name for p in aliases_dir.glob(".*.tmp")) == sorted(
        p.name for p in (live, foreign, bare))
    assert store.aliases("models") == {"latest": store.resolve("models", "latest")}
