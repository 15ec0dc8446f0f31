"""One store on a volume that two hosts share: crash clean-up on one host never removes the
work of a live process on the other (storage.owners, storage.staging).

Two processes stand in for two hosts: each has its own CHARLM_HOST_ID, and the cleaning one
also sees none of the other's pids as alive, as a kernel of another host would not.
"""

from __future__ import annotations

import json
import os

import pytest

from storage import StorageError, Store
from storage.owners import HOST_ID_ENV, host_id, owner_tag, parse_owner

ROUNDS = 60

PUBLISHER = """
import json, sys, time
import storage.fsutil
from storage import Store
# Writes as slow as on a network filesystem: each temporary file lingers before its rename.
real_write_file = storage.fsutil.write_file
def write_file(path, data):
    real_write_file(path, data)
    time.sleep(0.01)
storage.fsutil.write_file = write_file
store = Store(sys.argv[1])
ids = []
for i in range(int(sys.argv[2])):
    with store.publish("models", params={"i": i}) as staging:
        (staging.path / "weights.bin").write_bytes(b"w" * 10000)
    store.set_alias("models", "champion", staging.id, reason=f"round {i}")
    ids.append(staging.id)
print(json.dumps(ids), flush=True)
"""

CLEANER = """
import json, os, pathlib, sys
import storage.staging
from storage import Store
# On another host no pid of the publisher's host exists: every pid but ours is dead here.
storage.staging.pid_alive = lambda pid: pid == os.getpid()
removed = []
real_unlink = pathlib.Path.unlink
def unlink(self, *args, **kwargs):
    removed.append(self.name)
    return real_unlink(self, *args, **kwargs)
pathlib.Path.unlink = unlink
store = Store(sys.argv[1])
stop = pathlib.Path(sys.argv[2])
rounds = dirs = 0
print("ready", flush=True)
while not stop.exists():
    dirs += store.clean_staging()
    rounds += 1
print(json.dumps({"rounds": rounds, "dirs": dirs, "removed": removed}), flush=True)
"""


def test_cleaning_on_one_host_spares_a_live_publisher_on_another(tmp_path, spawn_python,
                                                                 monkeypatch):
    root, stop = tmp_path / "store", tmp_path / "stop"
    Store(root).clean_staging()  # nothing to do; makes sure the root is usable
    monkeypatch.setenv(HOST_ID_ENV, "host-b")
    cleaner = spawn_python(CLEANER, root, stop)
    assert cleaner.stdout.readline().strip() == "ready"
    monkeypatch.setenv(HOST_ID_ENV, "host-a")
    publisher = spawn_python(PUBLISHER, root, ROUNDS)
    try:
        published = publisher.communicate(timeout=120)[0]
    finally:
        stop.touch()
        cleaned = json.loads(cleaner.communicate(timeout=60)[0])
        publisher.kill()  # a no-op unless it hung
    # Every publish and alias move succeeded (with one host id for both processes, the
    # cleaner deletes the publisher's alias temporaries, and its os.replace fails).
    assert publisher.returncode == 0
    ids = json.loads(published)
    print(f"{cleaned['rounds']} clean-ups on host-b during {ROUNDS} publishes on host-a")
    assert cleaned["rounds"] > ROUNDS  # the cleaner really ran throughout
    assert cleaned["dirs"] == 0 and cleaned["removed"] == []  # nothing of host-a touched
    store = Store(root)
    assert [m["id"] for m in store.versions("models")] == ids
    assert store.resolve("models", "champion") == ids[-1]
    assert len(store.alias_history("models", "champion")) == ROUNDS
    assert store.verify() == []


def test_host_id_comes_from_the_environment_or_the_host(monkeypatch):
    monkeypatch.setenv(HOST_ID_ENV, "gpu-box_1")
    assert host_id() == "gpu-box_1"
    assert owner_tag() == f"{os.getpid()}@gpu-box_1"
    assert parse_owner(owner_tag()).host == "gpu-box_1"
    monkeypatch.delenv(HOST_ID_ENV)
    derived = host_id()
    assert derived == host_id() and "." not in derived and "@" not in derived
    for bad in ("", "a.b", "a@b", "x" * 65):
        monkeypatch.setenv(HOST_ID_ENV, bad)
        with pytest.raises(StorageError, match=f"bad {HOST_ID_ENV}"):
            host_id()


@pytest.mark.parametrize(("tag", "pid", "host"), [
    ("123@host-a", 123, "host-a"),
    ("123", 123, None),  # names written before host ids existed
])
def test_parse_owner(tag, pid, host):
    owner = parse_owner(tag)
    assert (owner.pid, owner.host) == (pid, host)


@pytest.mark.parametrize("tag", ["", "abc", "12@", "12@a.b", "@host"])
def test_parse_owner_rejects_what_names_no_owner(tag):
    assert parse_owner(tag) is None
