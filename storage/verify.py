"""Integrity checks: every version against its manifest, every alias against the versions.

`version_problems` checks one version (each file's presence, type, size and sha256, no
unexpected file, optionally its parents); `verify_kinds` checks whole kinds. Both report
`Problem`s rather than raising, so one bad version never hides the others.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.aliases import alias_names, read_alias
from storage.errors import CorruptVersionError, StorageError
from storage.fsutil import sha256_file
from storage.ids import is_version_id
from storage.layout import ALIASES_DIR, MANIFEST
from storage.manifests import read_manifest

__all__ = ["Problem", "verify_kinds", "version_problems"]


@dataclass(frozen=True)
class Problem:
    """One inconsistency found by ``Store.verify``."""

    kind: str
    id: str
    file: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.kind}/{self.id}" + (f"/{self.file}" if self.file else "")
        return f"{where}: {self.reason}"


def version_problems(root: Path, kind: str, version_id: str, *,
                     check_parents: bool, check_files: bool = True) -> list[Problem]:
    """What is wrong with version `version_id` of `kind` in the store at `root`; without
    `check_files`, only its manifest (and parents) are checked: no file is read or hashed."""
    directory = root / kind / version_id
    try:
        manifest = read_manifest(directory, kind, version_id)
    except CorruptVersionError as error:
        if not directory.exists():
            return []  # removed by a concurrent gc while we were looking
        return [Problem(kind, version_id, error.file, error.reason)]
    problems = []
    expected = manifest["files"] if check_files else {}
    for rel, entry in expected.items():
        full = directory / rel
        try:
            info = os.lstat(full)
        except FileNotFoundError:
            problems.append(Problem(kind, version_id, rel, "missing"))
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(Problem(kind, version_id, rel, "not a regular file"))
        elif info.st_size != entry["size"]:
            problems.append(Problem(kind, version_id, rel,
                                    f"size is {info.st_size} bytes, manifest says {entry['size']}"))
        elif sha256_file(full) != entry["sha256"]:
            problems.append(Problem(kind, version_id, rel, "sha256 does not match manifest"))
    for dirpath, _, filenames in os.walk(directory) if check_files else ():
        for name in filenames:
            rel = Path(dirpath, name).relative_to(directory).as_posix()
            if rel != MANIFEST and rel not in expected:
                problems.append(Problem(kind, version_id, rel, "unexpected file not in manifest"))
    if check_parents:
        for parent_kind, ids in manifest["parents"].items():
            for parent_id in ids:
                if not (root / parent_kind / parent_id).is_dir():
                    problems.append(Problem(kind, version_id, MANIFEST,
                                            f"parent {parent_kind} version {parent_id} is missing"))
    return problems


def verify_kinds(root: Path, kinds: Sequence[str], *, check_files: bool = True) -> list[Problem]:
    """Check every version of `kinds` and their aliases against disk (without `check_files`,
    manifests, parents and aliases only: quick, for `charlm status`)."""
    problems: list[Problem] = []
    for kind in kinds:
        kind_dir = root / kind
        try:
            entries = sorted(os.listdir(kind_dir))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.startswith("."):
                continue  # .staging, .aliases, .lock, history: the store's own bookkeeping
            if not is_version_id(entry) or not (kind_dir / entry).is_dir():
                problems.append(Problem(kind, entry, "", "unexpected entry in the store"))
                continue
            problems.extend(version_problems(root, kind, entry, check_parents=True,
                                             check_files=check_files))
        for name in alias_names(kind_dir):
            alias_file = f"{ALIASES_DIR}/{name}"
            try:
                target = read_alias(kind_dir, kind, name)
            except StorageError as error:
                problems.append(Problem(kind, "", alias_file, str(error)))
                continue
            if target is not None and not (kind_dir / target).is_dir():
                problems.append(Problem(kind, target, alias_file,
                                        f"alias {name!r} points to a missing version"))
    return problems
