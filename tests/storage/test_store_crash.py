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


def leftover_staging(root: Path) -> list[str]:
    found = []
    for kind in KINDS:
        staging_root = root / kind / ".staging"
        if staging_root.is_dir():
            found += [f"{kind}/{name}" for name in os.listdir(staging_root)]
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
        leftovers_seen += bool(leftover_staging(root))

        # After every kill: every visible version is complete and intact.
        store = Store(root)
        assert store.verify() == []
        for kind in KINDS:
            kind_dir = root / kind
            if not kind_dir.is_dir():
                continue
            for entry in os.listdir(kind_dir):
                if entry.startswith("."):
                    continue
                assert is_version_id(entry), entry
                assert (kind_dir / entry / MANIFEST).is_file()
                store.path(kind, entry)  # raises CorruptVersionError if anything is off
            for alias in store.aliases(kind):
                store.resolve(kind, alias)

    store = Store(root)
    assert len(store.versions("datasets")) > 0 and len(store.versions("models")) > 0
    # The kills landed inside publish at least sometimes, so the cleanup path was exercised.
    assert leftovers_seen > 0
    with store.publish("datasets") as staging:
        (staging.path / "after.txt").write_text("ok")
        # The publish started by removing everything the killed processes left behind.
        own = staging.path.name
        assert sorted(leftover_staging(root)) == [f"datasets/{own}", f"datasets/{own}.lock"]
    assert leftover_staging(root) == []
    assert store.verify() == []
