"""Where the store lives by default and which code produced an artifact.

Every manifest records ``code_version`` so that a model or evaluation can be traced back to the
commit that produced it.
"""

from __future__ import annotations

import functools
import os
import subprocess
from importlib import metadata
from pathlib import Path

from storage.backend import is_store_url
from storage.layout import DEFAULT_ROOT_NAME

ENV_VAR = "CHARLM_STORAGE"


def default_root() -> Path | str:
    """The store root: ``$CHARLM_STORAGE`` if set and non-empty (a store URL as the string it
    is), else ``./charlm-store``, relative to the working directory: the CLI run from the
    checkout keeps artifacts next to the code (``/charlm-store/`` is git-ignored)."""
    value = os.environ.get(ENV_VAR, "").strip()
    if is_store_url(value):
        return value
    return Path(value).expanduser() if value else Path(DEFAULT_ROOT_NAME)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git:<short sha>`` (``-dirty`` with uncommitted changes to tracked files) of this
    package's repository, else ``charlm <package version>``; once per process (a later edit
    of the checkout is not the code this process imported)."""
    return _git_version(Path(__file__).resolve().parent) or _package_version()


def _git_version(directory: Path) -> str | None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()

    try:
        sha = git("rev-parse", "--short", "HEAD")
        # Untracked files do not count: scratch files and other people's work in progress say
        # nothing about the code that was committed and imported.
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"git:{sha}{'-dirty' if dirty else ''}" if sha else None


def _package_version() -> str:
    try:
        return f"charlm {metadata.version('charlm')}"
    except metadata.PackageNotFoundError:
        return "charlm unknown"
