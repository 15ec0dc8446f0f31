"""Concurrent publishers in several processes, and gc beside a publish in progress."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

from storage import Store

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


HOLD_OPEN = """
import sys, time
from storage import Store
store = Store(sys.argv[1])
with store.publish("models") as staging:
    (staging.path / "half.bin").write_bytes(b"x" * 1000)
    print(staging.id, flush=True)
    sys.stdin.readline()  # until the test says so
print("done", flush=True)
"""


def test_gc_in_another_process_spares_a_publish_in_progress(tmp_path, spawn_python):
    """A process is inside publish() with its files written; gc --apply runs in another
    (the default retention: the upload is young): the publish then commits whole."""
    root = tmp_path / "store"
    store = Store(root)
    with store.publish("models") as staging:
        (staging.path / "old.bin").write_bytes(b"old")
    child = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(root)],
                             cwd=Path(__file__).resolve().parents[2],
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        version = child.stdout.readline().strip()
        assert store.gc(keep=0, apply=True) == []  # the old version is "latest"
        assert (root / "models" / version / "half.bin").is_file()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
    finally:
        child.kill()
        child.wait()
    assert store.resolve("models", "latest") == version
    assert store.verify() == []
