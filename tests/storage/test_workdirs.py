"""Work directories of an object store (storage.workdirs.MirroredWorkDirs) shared by two
hosts: a job resumes from the newest copy any host saved and never overwrites a newer one."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from storage.backend import open_backend
from storage.cache import FileCache, store_key
from storage.errors import StorageError
from storage.layout import WORK_DIR
from storage.workdirs import MirroredWorkDirs, unpack_work_dir

NAME = "train-0123abcd"


class Host(MirroredWorkDirs):
    """One machine's view of the store: the attributes the mixin expects, its own cache."""

    def __init__(self, url: str, cache_dir: Path) -> None:
        self.root = url
        self.backend = open_backend(url)
        self.cache = FileCache(cache_dir)
        self._key = store_key(url)


@pytest.fixture
def url() -> str:
    return f"memory://workdirs-{uuid.uuid4().hex}"


@pytest.fixture
def host_a(url: str, tmp_path: Path) -> Host:
    return Host(url, tmp_path / "hostA")


@pytest.fixture
def host_b(url: str, tmp_path: Path) -> Host:
    return Host(url, tmp_path / "hostB")


def run_to(host: Host, step: int) -> Path:
    """A job on `host`: resume, get to `step`, save (a checkpoint's on_save)."""
    work = host.work_dir(NAME)
    (work / "step").write_text(str(step))
    host.save_work_dir(work)
    return work


def saved_step(host: Host, tmp_path: Path) -> str:
    """The step of the store's copy, read straight from the store."""
    target = tmp_path / f"saved-{uuid.uuid4().hex}"
    target.mkdir()
    unpack_work_dir(host.backend.get(f"{WORK_DIR}/{NAME}.tar")[0], target)
    return (target / "step").read_text()


def test_a_rerun_resumes_from_the_newest_copy_another_host_saved(host_a: Host,
                                                                  host_b: Host) -> None:
    run_to(host_a, 100)  # host A stops at step 100
    work_b = host_b.work_dir(NAME)
    assert (work_b / "step").read_text() == "100"  # B resumes there ...
    (work_b / "step").write_text("900")
    host_b.save_work_dir(work_b)  # ... and stops at 900
    work_a = host_a.work_dir(NAME)  # A's rerun: its own old copy is stale
    assert (work_a / "step").read_text() == "900"
    (work_a / "step").write_text("1000")
    host_a.save_work_dir(work_a)  # and its next save goes on from there
    assert (host_b.work_dir(NAME) / "step").read_text() == "1000"


def test_a_save_never_overwrites_a_newer_copy(host_a: Host, host_b: Host,
                                              tmp_path: Path) -> None:
    work_a = run_to(host_a, 100)
    run_to(host_b, 900)
    # A goes on from its old copy without restoring (a run still going while B ran).
    (work_a / "step").write_text("200")
    with pytest.raises(StorageError, match="saved .*by another run meanwhile.*not uploaded"):
        host_a.save_work_dir(work_a)
    assert saved_step(host_a, tmp_path) == "900"
    assert (host_a.work_dir(NAME) / "step").read_text() == "900"  # A's rerun resumes at 900


def test_a_first_save_on_an_empty_store(host_a: Host, host_b: Host, tmp_path: Path) -> None:
    work = host_a.work_dir(NAME)
    assert [p.name for p in work.iterdir() if not p.name.startswith(".")] == []
    (work / "step").write_text("1")
    host_a.save_work_dir(work)
    host_a.save_work_dir(work)  # saving again, nothing saved elsewhere: fine
    assert saved_step(host_a, tmp_path) == "1"
    assert (host_b.work_dir(NAME) / "step").read_text() == "1"


def test_a_local_copy_in_step_with_the_store_is_kept(host_a: Host) -> None:
    work = run_to(host_a, 100)
    (work / "step").write_text("150")  # progress after the last save (killed before the next)
    assert (host_a.work_dir(NAME) / "step").read_text() == "150"


def test_two_fresh_starts_do_not_overwrite_each_other(host_a: Host, host_b: Host,
                                                      tmp_path: Path) -> None:
    work_a, work_b = host_a.work_dir(NAME), host_b.work_dir(NAME)  # both: nothing saved yet
    (work_a / "step").write_text("10")
    host_a.save_work_dir(work_a)
    (work_b / "step").write_text("20")
    with pytest.raises(StorageError, match="another run meanwhile"):
        host_b.save_work_dir(work_b)
    assert saved_step(host_a, tmp_path) == "10"


def test_a_copy_of_the_old_format_is_replaced_by_the_stores(host_a: Host,
                                                            host_b: Host) -> None:
    # A local copy left by the old code: marked ".restored", no ETag.
    old = host_a.cache.work_dir(host_a._key, NAME)
    old.mkdir(parents=True)
    (old / ".restored").touch()
    (old / "step").write_text("100")
    run_to(host_b, 900)
    assert (host_a.work_dir(NAME) / "step").read_text() == "900"


def test_remove(host_a: Host, host_b: Host) -> None:
    work = run_to(host_a, 100)
    host_a.remove_work_dir(work)
    assert not work.exists()
    assert host_a.backend.head(f"{WORK_DIR}/{NAME}.tar") is None
    assert not (host_b.work_dir(NAME) / "step").exists()  # a fresh start everywhere
    host_a.remove_work_dir(NAME)  # already gone: fine
    with pytest.raises(StorageError):
        host_a.remove_work_dir(Path("/elsewhere") / NAME)


def test_a_copy_removed_elsewhere_is_not_resumed(host_a: Host, host_b: Host) -> None:
    run_to(host_a, 100)
    host_b.remove_work_dir(host_b.work_dir(NAME))  # the job finished on B
    work = host_a.work_dir(NAME)
    assert not (work / "step").exists()
    (work / "step").write_text("1")
    host_a.save_work_dir(work)  # a new run of the job saves as a first save


def test_saves_from_one_hosts_threads_take_turns(host_a: Host, tmp_path: Path) -> None:
    """Generation shards finishing at once in threads of one job: every save succeeds (none
    swaps against an ETag another just replaced) and the store's copy has every file."""
    from concurrent.futures import ThreadPoolExecutor

    work = host_a.work_dir(NAME)

    def finish(k: int) -> None:
        temp = work / f"shard-{k}.tmp"
        temp.write_text(str(k))
        temp.replace(work / f"shard-{k}.jsonl")  # while others pack the folder
        host_a.save_work_dir(work)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(finish, range(24)))
    target = tmp_path / "saved"
    target.mkdir()
    unpack_work_dir(host_a.backend.get(f"{WORK_DIR}/{NAME}.tar")[0], target)
    assert sorted(p.name for p in target.glob("shard-*.jsonl")) == sorted(
        f"shard-{k}.jsonl" for k in range(24))
