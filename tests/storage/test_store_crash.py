"""Crash safety: a publisher SIGKILLed at random moments never leaves a partial version."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from storage import KINDS, MANIFEST, Store, is_version_id

KILLS = 30

# Publishes datasets and models (with lineage), moves aliases and runs gc, forever.
PUBLISHER = """
import os, sys
from storage import Store
store = Store(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    i += 1
    with store.publish("datasets", params={"i": i}) as staging:
        for n in range(3):
            (staging.path / f"part-{n}.txt").write_bytes(os.urandom(2000 * (n + 1)))
        (staging.path / "nested").mkdir()
        (staging.path / "nested" / "vocab.json").write_text('{"a": 1}')
        staging.summary["i"] = i
    with store.publish("models", parents={"datasets": ["latest"]}) as staging:
        (staging.path / "weights.bin").write_bytes(os.urandom(50000))
    if i % 3 == 0:
        store.set_alias("models", "champion", staging.id)
    if i % 4 == 0:
        store.gc(keep=2, apply=True)
"""


def uncommitted(store: Store) -> list[str]:
    """Version folders no log entry commits: what killed publishes left."""
    found = []
    for kind in KINDS:
        committed = {m["id"] for m in store.versions(kind)}
        kind_dir = Path(store.root) / kind
        if kind_dir.is_dir():
            found += [f"{kind}/{e}" for e in os.listdir(kind_dir)
                      if is_version_id(e) and e not in committed]
    return found


@pytest.mark.slow
def test_random_sigkills_never_leave_partial_versions(tmp_path, spawn_python):
    root = tmp_path / "store"
    rng = random.Random(int(os.environ.get("CHARLM_CRASH_SEED", "20261128")))
    leftovers_seen = 0
    for _ in range(KILLS):
        child = spawn_python(PUBLISHER, root)
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL  # it was still running: killed mid-work

        # After every kill: every committed version is complete and intact.
        store = Store(root)
        leftovers_seen += bool(uncommitted(store))
        assert store.verify() == []
        for kind in KINDS:
            for manifest in store.versions(kind):
                assert (store.path(kind, manifest["id"]) / MANIFEST).is_file()
            for alias in store.aliases(kind):
                store.resolve(kind, alias)

    store = Store(root)
    assert len(store.versions("datasets")) > 0 and len(store.versions("models")) > 0
    # The kills landed inside publish at least sometimes: uploads no entry commits.
    assert leftovers_seen > 0
    store.gc(keep=100, apply=True, retention_s=0)
    assert uncommitted(store) == []
    assert store.verify() == []
