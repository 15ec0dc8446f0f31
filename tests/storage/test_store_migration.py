"""A store written by the release before the commit log (tests/storage/fixtures/store-ad03c95,
made at commit ad03c95) opens, reads, verifies and accepts new versions; its first commit
imports the old aliases and alias history into the log.

The fixture was written by this script, run from a checkout of ad03c95::

    s = Store(root)
    d1 = put("datasets", {"headlines.txt": b"one\\ntwo\\n"}, seed=1, params={"source": "a.csv"})
    d2 = put("datasets", {"headlines.txt": b"one\\ntwo\\nthree\\n"}, parents={"datasets": [d1]},
             expect={"latest": d1})
    m1 = put("models", {"config.json": b"{}", "sub/w.bin": bytes(range(256))},
             parents={"datasets": [d1]}, seed=0)
    s.set_alias("models", "champion", m1, "first model")
    m2 = put("models", {"config.json": b"{}", "sub/w.bin": bytes(range(255, -1, -1))},
             parents={"datasets": [d2]}, seed=0)
    s.set_alias("models", "champion", m2, "beat the champion")
    e1 = put("evaluations", {"metrics.json": b'{"bpc": 2.0}'}, parents={"models": [m2]})
    # three feed items with validators; a work directory train-abc with state.json

On an object store the old release wrote the same keys, so the same files uploaded to
obstore's memory store stand for an old bucket.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from storage import Store
from storage.backend import open_backend
from storage.feeds import BufferedItem

FIXTURE = Path(__file__).parent / "fixtures" / "store-ad03c95"
D1, D2 = "20261207-013415-442431-aa98a1", "20261207-013415-458756-ecd1e7"
M1, M2 = "20261207-013415-461999-59d0bb", "20261207-013415-466765-ae4468"
E1 = "20261207-013415-471254-46895d"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["local", "memory"])
def old_store(request, tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    if request.param == "local":
        shutil.copytree(FIXTURE, tmp_path / "store")
        return str(tmp_path / "store")
    url = f"memory://{secrets.token_hex(6)}"
    backend = open_backend(url)
    for path in sorted(FIXTURE.rglob("*")):
        if path.is_file():
            backend.put(path.relative_to(FIXTURE).as_posix(), path.read_bytes())
    return url


def facts(store: Store) -> dict:
    return {"versions": {k: [m["id"] for m in store.versions(k)]
                         for k in ("datasets", "models", "evaluations")},
            "aliases": {k: store.aliases(k) for k in ("datasets", "models", "evaluations")},
            "history": [(h["id"], h["previous"], h["reason"])
                        for h in store.alias_history("models", "champion")]}


EXPECTED = {"versions": {"datasets": [D1, D2], "models": [M1, M2], "evaluations": [E1]},
            "aliases": {"datasets": {"latest": D2}, "models": {"champion": M2, "latest": M2},
                        "evaluations": {"latest": E1}},
            "history": [(M1, None, "first model"), (M2, M1, "beat the champion")]}


def test_an_old_store_reads_and_verifies_unchanged(old_store: str) -> None:
    store = Store(old_store)
    assert facts(store) == EXPECTED
    assert store.verify() == []
    assert (store.path("models", "champion") / "sub" / "w.bin").read_bytes() == \
        bytes(range(255, -1, -1))
    assert store.manifest("datasets", D2)["parents"] == {"datasets": [D1]}
    assert [i.guid for i in store.feeds.items()] == ["urn:0", "urn:1", "urn:2"]
    assert store.feeds.validators("http://f.test/") == ('"e1"', None)


def test_an_old_store_accepts_new_versions_and_keeps_its_history(old_store: str) -> None:
    store = Store(old_store)
    with store.publish("datasets", parents={"datasets": ["latest"]},
                       expect={"latest": D2}) as staging:
        (staging.path / "headlines.txt").write_bytes(b"one\ntwo\nthree\nfour\n")
    store.set_alias("models", "champion", M1, "rolled back")
    started = time.monotonic()
    with store.feeds.locked() as state:  # the old empty lock file does not hold anyone up
        state.append([BufferedItem(guid="urn:3", link=None, title="T 3", headline="t 3",
                                   publish_date=date(2024, 5, 2), dated=True,
                                   source="http://f.test/",
                                   fetched_at=datetime(2024, 5, 2, tzinfo=timezone.utc))])
    assert time.monotonic() - started < 5
    expected = json.loads(json.dumps(EXPECTED))
    expected["versions"]["datasets"].append(staging.id)
    expected["aliases"]["datasets"]["latest"] = staging.id
    expected["aliases"]["models"]["champion"] = M1
    expected["history"].append([M1, M2, "rolled back"])
    # A fresh process reads the log (no state shared with this one).
    code = ("import json, sys; from storage import Store; "
            "from tests.storage.test_store_migration import facts; "
            "s = Store(sys.argv[1]); print(json.dumps([facts(s), [str(p) for p in s.verify()],"
            " [i.guid for i in s.feeds.items()]]))")
    if old_store.startswith("memory://"):
        seen = [facts(Store(old_store)), [str(p) for p in Store(old_store).verify()],
                [i.guid for i in Store(old_store).feeds.items()]]
    else:
        out = subprocess.run([sys.executable, "-c", code, old_store], cwd=REPO, check=True,
                             capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                  "HOME": str(Path(old_store).parent)}).stdout
        seen = json.loads(out)
    assert json.loads(json.dumps(seen[0])) == expected
    assert seen[1] == []
    assert seen[2] == ["urn:0", "urn:1", "urn:2", "urn:3"]


def test_gc_on_an_old_store_follows_the_imported_lineage(old_store: str) -> None:
    store = Store(old_store)
    # D1 stays: the parent of D2 (latest); M1 was the champion once, now only old.
    assert store.gc(keep=0, apply=True) == [("models", M1)]
    assert facts(Store(old_store))["versions"] == {"datasets": [D1, D2], "models": [M2],
                                                   "evaluations": [E1]}
    assert Store(old_store).verify() == []
