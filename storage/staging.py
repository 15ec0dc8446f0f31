"""Clean-up of what killed processes leave behind: staging directories and alias temp files.

A staging directory is removed only when its owner no longer holds its claim (the OS drops
the lock when a process dies, even by SIGKILL), or, for a directory without a claim file,
when its owner is provably gone. Names carry their owner (storage.owners: ``<pid>@<host>``):
a leftover of this host goes once its pid is dead or nothing in it changed for an hour; one
of another host (or of unknown host: a bare pid, from older versions) only past
`FOREIGN_LEASE_S`, because no pid of another host can be checked from here. A publish in
progress in another live process, on this host or another sharing the volume, is never
touched (see docs/shared-volume.md).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from filelock import FileLock, Timeout

from storage.fsutil import tree_mtime
from storage.ids import KINDS
from storage.layout import ALIASES_DIR, CLAIM_SUFFIX, STAGING_DIR
from storage.locks import claim_file
from storage.owners import FOREIGN_LEASE_S, host_id, parse_owner, pid_alive

__all__ = ["STALE_AFTER_S", "clean_staging"]

# A staging directory without an ownership lock file (which only a crash at an unlucky moment
# or a foreign tool leaves behind), or an alias temp file, of a process of this host is
# removed once nothing in it changed for this long, even if the pid is alive (pids are reused).
STALE_AFTER_S = 3600.0


def clean_staging(root: Path) -> int:
    """Remove staging directories left behind by killed processes; return how many."""
    removed = 0
    for kind in KINDS:
        staging_root = root / kind / STAGING_DIR
        try:
            entries = set(os.listdir(staging_root))
        except FileNotFoundError:
            entries = set()
        for entry in sorted(entries):
            full = staging_root / entry
            # Staging names are "<id>.<owner>" or "<id>.<owner>.gc" (+ CLAIM_SUFFIX: a claim).
            tag = (entry.split(".") + [""])[1]
            if not _owner_here(tag) and _idle_s(full) <= FOREIGN_LEASE_S:
                # Another host's claim is trusted only as far as locks are shared between
                # hosts (docs/shared-volume.md); its leftovers wait for the lease regardless.
                continue
            if entry.endswith(CLAIM_SUFFIX):
                if entry[: -len(CLAIM_SUFFIX)] not in entries:
                    _remove_if_unclaimed(full.with_name(entry[: -len(CLAIM_SUFFIX)]))
            elif full.is_dir():
                if f"{entry}{CLAIM_SUFFIX}" in entries:
                    removed += _remove_if_unclaimed(full)
                elif _abandoned(tag, full):
                    shutil.rmtree(full, ignore_errors=True)
                    if not full.exists():
                        removed += 1
        _clean_alias_temp_files(root / kind / ALIASES_DIR)
    return removed


def _remove_if_unclaimed(directory: Path) -> bool:
    """Remove ``directory`` and its claim lock file if no live process holds the claim."""
    lock_path = claim_file(directory)
    lock = FileLock(lock_path, thread_local=False)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return False
    except FileNotFoundError:
        return False  # the staging directory itself was removed meanwhile
    try:
        existed = directory.exists()
        shutil.rmtree(directory, ignore_errors=True)
        if directory.exists():
            return False
        lock_path.unlink(missing_ok=True)
        return existed
    finally:
        lock.release()


def _clean_alias_temp_files(aliases_dir: Path) -> None:
    try:
        names = os.listdir(aliases_dir)
    except FileNotFoundError:
        return
    for name in names:
        # Temporary files are ".<alias>.<owner>.<random>.tmp" (see fsutil.replace_file).
        parts = name.split(".")
        if name.startswith(".") and name.endswith(".tmp") and len(parts) >= 4:
            full = aliases_dir / name
            if _abandoned(parts[-3], full):
                full.unlink(missing_ok=True)


def _abandoned(tag: str, path: Path) -> bool:
    """Whether `path`, named with owner tag `tag`, is provably abandoned: its owner is a dead
    process of this host, or it has been idle past the age that applies to its owner."""
    if _owner_here(tag):
        pid = parse_owner(tag).pid
        return (pid != os.getpid() and not pid_alive(pid)) or _idle_s(path) > STALE_AFTER_S
    # Another host's (or an unknown host's) pid says nothing here: only a long idle does.
    return _idle_s(path) > FOREIGN_LEASE_S


def _owner_here(tag: str) -> bool:
    owner = parse_owner(tag)
    return owner is not None and owner.host == host_id()


def _idle_s(path: Path) -> float:
    newest = tree_mtime(path)
    # Vanished (0): its owner just finished with it, the opposite of idle.
    return time.time() - newest if newest else 0.0
