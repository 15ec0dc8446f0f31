"""Clean-up of what killed processes leave behind: staging directories and alias temp files.

A staging directory is removed only when its owner no longer holds its claim (the OS drops
the lock when a process dies, even by SIGKILL), or, for a directory without a claim file,
when its owner pid is dead or nothing in it changed for an hour. A publish in progress in
another live process is never touched.
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

__all__ = ["STALE_AFTER_S", "clean_staging"]

# A staging directory without an ownership lock file (which only a crash at an unlucky moment
# or a foreign tool leaves behind) is removed once nothing in it changed for this long.
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
            if entry.endswith(CLAIM_SUFFIX):
                if entry[: -len(CLAIM_SUFFIX)] not in entries:
                    _remove_if_unclaimed(full.with_name(entry[: -len(CLAIM_SUFFIX)]))
            elif full.is_dir():
                if f"{entry}{CLAIM_SUFFIX}" in entries:
                    removed += _remove_if_unclaimed(full)
                elif _owner_gone(entry) or _stale(full):
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
        # Temporary files are ".<alias>.<pid>.<random>.tmp" (see fsutil.replace_file).
        parts = name.split(".")
        if name.startswith(".") and name.endswith(".tmp") and len(parts) >= 4:
            full = aliases_dir / name
            if _pid_dead(parts[-3]) or _stale(full):
                full.unlink(missing_ok=True)


def _pid_dead(text: str) -> bool:
    """Whether ``text`` is the pid of a process that no longer exists on this machine."""
    if not text.isdigit():
        return False
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False  # someone else's live process, or nonsense: not provably dead
    return False


def _owner_gone(staging_name: str) -> bool:
    # Staging names are "<id>.<pid>" or "<id>.<pid>.gc".
    parts = staging_name.split(".")
    return len(parts) >= 2 and parts[1] != str(os.getpid()) and _pid_dead(parts[1])


def _stale(path: Path) -> bool:
    return time.time() - tree_mtime(path) > STALE_AFTER_S
