"""The versioned, immutable artifact store (see the package docstring for the on-disk layout).

A version is written into a private staging directory, hashed, fsynced, described by a
``manifest.json`` written last, and only then renamed into place in one atomic step. A version
directory that is visible under ``<root>/<kind>/`` is therefore always complete; anything
interrupted stays in ``.staging`` where ``clean_staging`` finds it once its owner is gone.

Locks: each kind has one lock file (``<root>/<kind>/.lock``). It is held briefly to make a
version visible and update aliases, and ``gc`` holds all of them while it decides what to drop,
so a publish can never commit a version whose parent ``gc`` is deleting. Each staging directory
has its own lock file, held by its publishing process for as long as the directory exists, so
that a cleaner can tell a live publish (lock held) from a killed one (lock free) without trusting
process ids, which get reused.
"""

from __future__ import annotations

import errno
import heapq
import json
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from storage.errors import CorruptVersionError, StorageError
from storage.fsutil import (
    fsync_dir,
    hash_and_sync,
    replace_file,
    sha256_file,
    tree_mtime,
    write_file,
)
from storage.ids import (
    KINDS,
    check_alias_name,
    check_kind,
    id_time,
    is_alias_name,
    is_version_id,
    looks_like_id_prefix,
    new_version_id,
)
from storage.provenance import code_version

MANIFEST = "manifest.json"
FORMAT = 1
STAGING_DIR = ".staging"
ALIASES_DIR = ".aliases"
LOCK_FILE = ".lock"
WORK_DIR = ".work"
CLAIM_SUFFIX = ".lock"
# A staging directory without an ownership lock file (which only a crash at an unlucky moment
# or a foreign tool leaves behind) is removed once nothing in it changed for this long.
STALE_AFTER_S = 3600.0
# Kind locks are held for milliseconds; waiting minutes means something is badly wrong.
LOCK_TIMEOUT_S = 300.0
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_HEX = set("0123456789abcdef")
_WORK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class Staging:
    """What ``Store.publish`` yields: write files under ``path``, fill ``summary``."""

    path: Path
    summary: dict
    id: str
    kind: str


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


class Store:
    """A directory of immutable, versioned artifacts with aliases and lineage."""

    def __init__(self, root: str | Path) -> None:
        # Made absolute up front so that a later chdir (Prefect workers, tests) cannot silently
        # move the store; this reads the cwd but touches nothing on disk.
        self.root: Path = Path(os.path.abspath(Path(root).expanduser()))
        self._locks: dict[str, FileLock] = {}
        self._locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ----------------------------------------------------------------------------- publishing

    @contextmanager
    def publish(
        self,
        kind: str,
        *,
        parents: Mapping[str, Sequence[str]] | None = None,
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
        aliases: Sequence[str] = ("latest",),
    ) -> Iterator[Staging]:
        """Create a new version of ``kind``; see the package docstring for the protocol.

        ``parents`` maps kinds to version ids (aliases and unique prefixes are resolved to ids
        now). On normal exit of the ``with`` block the files written under ``staging.path``
        become the new version and every name in ``aliases`` points to it. If the block raises,
        the staging directory is removed and the exception propagates; nothing becomes visible.
        """
        check_kind(kind)
        alias_names = _check_alias_list(aliases)
        parent_ids = self._resolve_parents(kind, parents)
        params = dict(params or {})
        _to_json(params, f"params of the new {kind} version")  # fail now, not after training
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise StorageError(f"seed must be an int or None, got {seed!r}")

        version_id = new_version_id()
        visible = False
        try:
            self.clean_staging()
            staging_root = self._kind_dir(kind) / STAGING_DIR
            staging_root.mkdir(parents=True, exist_ok=True)
            with self._claim(staging_root / f"{version_id}.{os.getpid()}") as path:
                try:
                    path.mkdir()
                    staging = Staging(path=path, summary={}, id=version_id, kind=kind)
                    yield staging
                    manifest = self._build_manifest(staging, parent_ids, params, seed)
                    self._seal(staging, manifest)
                    with self._locked(kind):
                        # gc may have dropped a parent while the caller was busy; it cannot do
                        # so now (it needs this lock too), so check and rename are atomic.
                        self._check_parents_exist(kind, parent_ids)
                        os.rename(path, self._kind_dir(kind) / version_id)
                        visible = True
                        fsync_dir(self._kind_dir(kind))
                        for name in alias_names:
                            self._write_alias(kind, name, version_id)
                except BaseException:
                    # Removed while the claim is still held, so no cleaner races with us.
                    if not visible:
                        shutil.rmtree(path, ignore_errors=True)
                    raise
        except OSError as error:
            if error.errno not in _DISK_FULL:
                raise
            note = f" (version {version_id} was published, aliases may be stale)" if visible else ""
            raise StorageError(f"disk full while publishing {kind}: {error}{note}") from error

    def _build_manifest(
        self,
        staging: Staging,
        parents: dict[str, list[str]],
        params: dict,
        seed: int | None,
    ) -> dict:
        kind, path = staging.kind, staging.path
        if not path.is_dir():
            raise StorageError(f"staging directory of {kind} version {staging.id} vanished: {path}")
        files: dict[str, dict] = {}
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in [*dirnames, *sorted(filenames)]:
                full = Path(dirpath, name)
                rel = full.relative_to(path).as_posix()
                mode = os.lstat(full).st_mode
                if stat.S_ISDIR(mode):
                    continue
                if not stat.S_ISREG(mode):
                    raise StorageError(
                        f"cannot publish {kind}: {rel!r} is not a regular file "
                        "(symlinks and special files cannot be stored)"
                    )
                if rel == MANIFEST:
                    raise StorageError(
                        f"cannot publish {kind}: the file name {MANIFEST!r} is reserved "
                        "for the store's manifest"
                    )
                sha, size = hash_and_sync(full)
                files[rel] = {"sha256": sha, "size": size}
                # Read-only files make accidental in-place edits of a published version fail.
                os.chmod(full, stat.S_IMODE(mode) & ~_WRITE_BITS)
        return {
            "format": FORMAT,
            "kind": kind,
            "id": staging.id,
            "created_at": id_time(staging.id).isoformat(),
            "published_at": datetime.now(timezone.utc).isoformat(),
            "files": files,
            "parents": parents,
            "params": params,
            "seed": seed,
            "code_version": code_version(),
            "summary": staging.summary,
        }

    def _seal(self, staging: Staging, manifest: dict) -> None:
        """Write the manifest (last) and make the whole staging tree durable."""
        data = _to_json(manifest, f"summary of the new {staging.kind} version")
        manifest_path = staging.path / MANIFEST
        write_file(manifest_path, data)
        os.chmod(manifest_path, 0o444)
        # Deepest directories first, so each parent's fsync covers a child that is complete.
        directories = [Path(d) for d, _, _ in os.walk(staging.path)]
        for directory in reversed(directories):
            fsync_dir(directory)

    def _resolve_parents(
        self, kind: str, parents: Mapping[str, Sequence[str]] | None
    ) -> dict[str, list[str]]:
        if parents is None:
            return {}
        if not isinstance(parents, Mapping):
            raise StorageError(f"parents must map kinds to lists of ids, got {parents!r}")
        resolved: dict[str, list[str]] = {}
        for parent_kind, refs in parents.items():
            check_kind(parent_kind)
            if isinstance(refs, str) or not isinstance(refs, Sequence):
                raise StorageError(f"parents[{parent_kind!r}] must be a list of ids, got {refs!r}")
            ids: list[str] = []
            for ref in refs:
                try:
                    version_id = self.resolve(parent_kind, ref)
                except StorageError as error:
                    raise StorageError(
                        f"cannot publish {kind}: parent {parent_kind} {ref!r} does not exist "
                        f"({error})"
                    ) from None
                if version_id not in ids:
                    ids.append(version_id)
            resolved[parent_kind] = ids
        return resolved

    def _check_parents_exist(self, kind: str, parents: dict[str, list[str]]) -> None:
        for parent_kind, ids in parents.items():
            for version_id in ids:
                if not (self._kind_dir(parent_kind) / version_id).is_dir():
                    raise StorageError(
                        f"cannot publish {kind}: parent {parent_kind} version {version_id} "
                        "was removed while publishing (by gc?)"
                    )

    # ------------------------------------------------------------------------------- reading

    def resolve(self, kind: str, ref: str) -> str:
        """The version id that ``ref`` (id, alias name or unique id prefix) stands for."""
        check_kind(kind)
        if not isinstance(ref, str) or not ref:
            raise StorageError(f"bad {kind} reference {ref!r}: expected a version id or alias")
        if is_version_id(ref):
            if (self._kind_dir(kind) / ref).is_dir():
                return ref
        elif looks_like_id_prefix(ref):
            matches = [i for i in self._ids(kind) if i.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise StorageError(
                    f"ambiguous {kind} id prefix {ref!r}: matches {len(matches)} versions "
                    f"({', '.join(matches[:5])}{', ...' if len(matches) > 5 else ''})"
                )
        elif is_alias_name(ref):
            target = self._read_alias(kind, ref)
            if target is not None:
                if not (self._kind_dir(kind) / target).is_dir():
                    raise StorageError(f"{kind} alias {ref!r} points to missing version {target}")
                return target
        raise StorageError(self._not_found(kind, ref))

    def _not_found(self, kind: str, ref: str) -> str:
        ids = self._ids(kind)
        message = f"unknown {kind} version or alias {ref!r} in store {self.root}"
        if not ids:
            return f"{message}; there are no {kind} versions yet"
        shown = ", ".join(ids[-5:])
        aliases = ", ".join(f"{name} -> {target}" for name, target in self.aliases(kind).items())
        return (
            f"{message}; {len(ids)} version(s) exist, newest: {shown}; aliases: {aliases or 'none'}"
        )

    def path(self, kind: str, ref: str, *, verify: bool = True) -> Path:
        """The directory of version ``ref``; with ``verify``, check every file's checksum first."""
        version_id = self.resolve(kind, ref)
        if verify:
            problems = self._version_problems(kind, version_id, check_parents=False)
            if problems:
                first = problems[0]
                more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
                raise CorruptVersionError(kind, version_id, first.file, first.reason + more)
        return self._kind_dir(kind) / version_id

    def manifest(self, kind: str, ref: str) -> dict:
        return self._read_manifest(kind, self.resolve(kind, ref))

    def versions(self, kind: str) -> list[dict]:
        """Manifests of every version of ``kind``, oldest first."""
        check_kind(kind)
        return [self._read_manifest(kind, version_id) for version_id in self._ids(kind)]

    def aliases(self, kind: str) -> dict[str, str]:
        """Alias name -> version id, including aliases whose version no longer exists."""
        check_kind(kind)
        result = {}
        for name in self._alias_names(kind):
            try:
                target = self._read_alias(kind, name)
            except StorageError:
                continue  # verify() reports unreadable alias files
            if target is not None:
                result[name] = target
        return result

    def set_alias(self, kind: str, name: str, version_id: str) -> None:
        """Point alias ``name`` at an existing version (atomic, under the kind's lock)."""
        check_kind(kind)
        check_alias_name(name)
        if not isinstance(version_id, str) or not is_version_id(version_id):
            raise StorageError(
                f"cannot set {kind} alias {name!r}: {version_id!r} is not a version id"
            )
        if not (self._kind_dir(kind) / version_id).is_dir():
            raise StorageError(self._not_found(kind, version_id))
        with self._locked(kind):
            if not (self._kind_dir(kind) / version_id).is_dir():  # gc may have been faster
                raise StorageError(self._not_found(kind, version_id))
            try:
                self._write_alias(kind, name, version_id)
            except OSError as error:
                if error.errno not in _DISK_FULL:
                    raise
                raise StorageError(
                    f"disk full while setting {kind} alias {name!r}: {error}"
                ) from error

    # ---------------------------------------------------------------------------- integrity

    def verify(self, kind: str | None = None) -> list[Problem]:
        """Check every version of ``kind`` (default: all kinds) and its aliases against disk."""
        kinds = KINDS if kind is None else (check_kind(kind),)
        problems: list[Problem] = []
        for k in kinds:
            kind_dir = self._kind_dir(k)
            try:
                entries = sorted(os.listdir(kind_dir))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.startswith("."):
                    continue  # .staging, .aliases, .lock: the store's own bookkeeping
                if not is_version_id(entry) or not (kind_dir / entry).is_dir():
                    problems.append(Problem(k, entry, "", "unexpected entry in the store"))
                    continue
                problems.extend(self._version_problems(k, entry, check_parents=True))
            for name in self._alias_names(k):
                alias_file = f"{ALIASES_DIR}/{name}"
                try:
                    target = self._read_alias(k, name)
                except StorageError as error:
                    problems.append(Problem(k, "", alias_file, str(error)))
                    continue
                if target is not None and not (kind_dir / target).is_dir():
                    problems.append(
                        Problem(
                            k, target, alias_file, f"alias {name!r} points to a missing version"
                        )
                    )
        return problems

    def _version_problems(
        self, kind: str, version_id: str, *, check_parents: bool
    ) -> list[Problem]:
        directory = self._kind_dir(kind) / version_id
        try:
            manifest = self._read_manifest(kind, version_id)
        except CorruptVersionError as error:
            if not directory.exists():
                return []  # removed by a concurrent gc while we were looking
            return [Problem(kind, version_id, error.file, error.reason)]
        problems = []
        expected = manifest["files"]
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
                problems.append(
                    Problem(
                        kind,
                        version_id,
                        rel,
                        f"size is {info.st_size} bytes, manifest says {entry['size']}",
                    )
                )
            elif sha256_file(full) != entry["sha256"]:
                problems.append(Problem(kind, version_id, rel, "sha256 does not match manifest"))
        for dirpath, _, filenames in os.walk(directory):
            for name in filenames:
                rel = Path(dirpath, name).relative_to(directory).as_posix()
                if rel != MANIFEST and rel not in expected:
                    problems.append(
                        Problem(kind, version_id, rel, "unexpected file not in manifest")
                    )
        if check_parents:
            for parent_kind, ids in manifest["parents"].items():
                for parent_id in ids:
                    if not (self._kind_dir(parent_kind) / parent_id).is_dir():
                        problems.append(
                            Problem(
                                kind,
                                version_id,
                                MANIFEST,
                                f"parent {parent_kind} version {parent_id} is missing",
                            )
                        )
        return problems

    def _read_manifest(self, kind: str, version_id: str) -> dict:
        manifest_path = self._kind_dir(kind) / version_id / MANIFEST
        try:
            data = json.loads(manifest_path.read_bytes())
        except FileNotFoundError:
            raise CorruptVersionError(kind, version_id, MANIFEST, "missing") from None
        except (OSError, ValueError) as error:
            raise CorruptVersionError(
                kind, version_id, MANIFEST, f"unreadable or not valid JSON ({error})"
            ) from None
        problem = _manifest_problem(data, kind, version_id)
        if problem:
            raise CorruptVersionError(kind, version_id, MANIFEST, problem)
        return data

    # ----------------------------------------------------------------------------- cleanup

    def gc(self, keep: int = 5, apply: bool = False) -> list[tuple[str, str]]:
        """The (kind, id) pairs that are (``apply``) or would be (dry run) removed, in the
        order they are removed (children before parents).

        Kept: every version an alias points to, the newest ``keep`` of each kind, and the
        parents (transitively, across kinds) of everything kept.
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise StorageError(f"keep must be a non-negative int, got {keep!r}")
        if not self.root.is_dir():
            return []
        if not apply:
            return self._gc_plan(keep)
        with ExitStack() as claims:
            trash = []
            with self._locked(*KINDS):
                doomed = self._gc_plan(keep)
                for kind, version_id in doomed:
                    staging_root = self._kind_dir(kind) / STAGING_DIR
                    staging_root.mkdir(exist_ok=True)
                    # Renaming into staging makes the removal atomic for readers; the slow
                    # rmtree happens after the kind locks are released. Should this process
                    # die first, clean_staging finishes the job.
                    target = claims.enter_context(
                        self._claim(staging_root / f"{version_id}.{os.getpid()}.gc")
                    )
                    os.rename(self._kind_dir(kind) / version_id, target)
                    trash.append(target)
                for kind in {k for k, _ in doomed}:
                    fsync_dir(self._kind_dir(kind))
            for target in trash:
                shutil.rmtree(target, ignore_errors=True)
        return doomed

    def _gc_plan(self, keep: int) -> list[tuple[str, str]]:
        ids = {kind: self._ids(kind) for kind in KINDS}
        kept: set[tuple[str, str]] = set()
        for kind in KINDS:
            if keep:
                kept.update((kind, version_id) for version_id in ids[kind][-keep:])
            for target in self.aliases(kind).values():
                if target in ids[kind]:
                    kept.add((kind, target))
        pending = list(kept)
        while pending:
            kind, version_id = pending.pop()
            try:
                manifest = self._read_manifest(kind, version_id)
            except CorruptVersionError as error:
                raise CorruptVersionError(
                    kind,
                    version_id,
                    error.file,
                    f"{error.reason}; gc refuses to run without the lineage of every kept version",
                ) from None
            for parent_kind, parent_ids in manifest["parents"].items():
                for parent_id in parent_ids:
                    if (parent_kind, parent_id) not in kept and parent_id in ids[parent_kind]:
                        kept.add((parent_kind, parent_id))
                        pending.append((parent_kind, parent_id))
        doomed = [(k, i) for k in KINDS for i in ids[k] if (k, i) not in kept]
        return self._children_first(doomed)

    def _children_first(self, doomed: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Order ``doomed`` so that every version comes before its parents.

        gc may be killed half-way; deleting children first means that whatever it leaves
        behind never has a visible version whose parent is gone.
        """
        # Newest first among versions that are ready (no remaining child), by rank in id order.
        rank = {node: -n for n, node in enumerate(sorted(doomed, key=lambda node: node[1]))}
        doomed_set = set(doomed)
        parents_of: dict[tuple[str, str], list[tuple[str, str]]] = {}
        children_left = dict.fromkeys(doomed, 0)
        for node in doomed:
            try:
                parents = self._read_manifest(*node)["parents"]
            except CorruptVersionError:
                parents = {}  # its lineage is unknown; it is deleted anyway
            parents_of[node] = [
                (k, i) for k, ids in parents.items() for i in ids if (k, i) in doomed_set
            ]
            for parent in parents_of[node]:
                children_left[parent] += 1
        ready = [(rank[node], node) for node in doomed if children_left[node] == 0]
        heapq.heapify(ready)
        order: list[tuple[str, str]] = []
        while ready:
            _, node = heapq.heappop(ready)
            order.append(node)
            for parent in parents_of[node]:
                children_left[parent] -= 1
                if children_left[parent] == 0:
                    heapq.heappush(ready, (rank[parent], parent))
        # Only a hand-made cycle in the lineage leaves nodes behind; delete those newest first.
        order += sorted(doomed_set - set(order), key=lambda node: rank[node])
        assert len(order) == len(doomed)
        return order

    def clean_staging(self) -> int:
        """Remove staging directories left behind by killed processes; return how many.

        A staging directory is removed only when its owner no longer holds its lock file (the
        OS drops the lock when a process dies, even by SIGKILL), or, for a directory without a
        lock file, when its owner pid is dead or nothing in it changed for an hour. A publish in
        progress in another live process is never touched.
        """
        removed = 0
        for kind in KINDS:
            staging_root = self._kind_dir(kind) / STAGING_DIR
            try:
                entries = set(os.listdir(staging_root))
            except FileNotFoundError:
                entries = set()
            for entry in sorted(entries):
                full = staging_root / entry
                if entry.endswith(CLAIM_SUFFIX):
                    if entry[: -len(CLAIM_SUFFIX)] not in entries:
                        self._remove_if_unclaimed(full.with_name(entry[: -len(CLAIM_SUFFIX)]))
                elif full.is_dir():
                    if f"{entry}{CLAIM_SUFFIX}" in entries:
                        removed += self._remove_if_unclaimed(full)
                    elif _owner_gone(entry) or _stale(full):
                        shutil.rmtree(full, ignore_errors=True)
                        if not full.exists():
                            removed += 1
            self._clean_alias_temp_files(kind)
        return removed

    def _remove_if_unclaimed(self, directory: Path) -> bool:
        """Remove ``directory`` and its claim lock file if no live process holds the claim."""
        lock_path = directory.with_name(directory.name + CLAIM_SUFFIX)
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

    def _clean_alias_temp_files(self, kind: str) -> None:
        aliases_dir = self._kind_dir(kind) / ALIASES_DIR
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

    # --------------------------------------------------------------------------- work dirs

    @property
    def inbox(self) -> Path:
        """``<root>/inbox``: where new headline CSVs are dropped for the ingest flow.

        Not created here; processed files are moved to ``inbox/processed/<dataset id>/``.
        """
        return self.root / "inbox"

    def work_dir(self, name: str) -> Path:
        """A persistent scratch directory ``<root>/.work/<name>``, created if missing.

        For resumable jobs (training checkpoints, generation shards): unlike staging, it
        survives the process so a rerun with the same ``name`` can pick up where a killed one
        stopped. It is not versioned, verified or touched by ``gc``/``clean_staging``; call
        ``remove_work_dir`` once the job's result is published.
        """
        path = self.root / WORK_DIR / _check_work_name(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove_work_dir(self, work_dir: str | Path) -> None:
        """Delete a directory made by ``work_dir`` (given as its name or its path)."""
        work_root = self.root / WORK_DIR
        candidate = Path(work_dir)
        if candidate.is_absolute() or len(candidate.parts) > 1:
            if Path(os.path.abspath(candidate)).parent != work_root:
                raise StorageError(f"{str(work_dir)!r} is not a work directory of {self}")
            name = candidate.name
        else:
            name = str(work_dir)
        shutil.rmtree(work_root / _check_work_name(name), ignore_errors=True)

    # ------------------------------------------------------------------------------ helpers

    def _kind_dir(self, kind: str) -> Path:
        return self.root / kind

    def _ids(self, kind: str) -> list[str]:
        kind_dir = self._kind_dir(kind)
        try:
            entries = os.listdir(kind_dir)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if is_version_id(e) and (kind_dir / e).is_dir())

    def _alias_names(self, kind: str) -> list[str]:
        try:
            names = os.listdir(self._kind_dir(kind) / ALIASES_DIR)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith("."))

    def _read_alias(self, kind: str, name: str) -> str | None:
        alias_path = self._kind_dir(kind) / ALIASES_DIR / name
        try:
            text = alias_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise StorageError(f"cannot read {kind} alias {name!r}: {error}") from None
        if not is_version_id(text):
            raise StorageError(
                f"{kind} alias file {alias_path} does not contain a version id: {text[:80]!r}"
            )
        return text

    def _write_alias(self, kind: str, name: str, version_id: str) -> None:
        aliases_dir = self._kind_dir(kind) / ALIASES_DIR
        aliases_dir.mkdir(exist_ok=True)
        replace_file(aliases_dir / name, f"{version_id}\n".encode())

    @contextmanager
    def _claim(self, directory: Path) -> Iterator[Path]:
        """Hold the ownership lock of a staging directory for as long as it may exist.

        The lock is taken before the directory is created and dropped only after it has been
        renamed away or removed, so "lock free" reliably means "owner finished or died".
        """
        lock_path = directory.with_name(directory.name + CLAIM_SUFFIX)
        lock = FileLock(lock_path, thread_local=False)
        lock.acquire(timeout=LOCK_TIMEOUT_S)
        try:
            yield directory
        finally:
            if not directory.exists():
                lock_path.unlink(missing_ok=True)
            lock.release()

    def _lock(self, kind: str) -> FileLock:
        with self._locks_guard:
            if kind not in self._locks:
                kind_dir = self._kind_dir(kind)
                kind_dir.mkdir(parents=True, exist_ok=True)
                # Thread-local (the default) so that threads of one process exclude each other.
                self._locks[kind] = FileLock(kind_dir / LOCK_FILE, timeout=LOCK_TIMEOUT_S)
            return self._locks[kind]

    @contextmanager
    def _locked(self, *kinds: str) -> Iterator[None]:
        """Hold the locks of ``kinds``, always taken in KINDS order so that gc (all kinds) and
        publish (one kind) cannot deadlock."""
        locks = [self._lock(kind) for kind in KINDS if kind in kinds]
        held: list[FileLock] = []
        try:
            for lock in locks:
                try:
                    lock.acquire()
                except Timeout:
                    raise StorageError(
                        f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for lock {lock.lock_file}"
                    ) from None
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                if lock.is_locked:
                    lock.release()


def _check_alias_list(aliases: Sequence[str]) -> list[str]:
    if isinstance(aliases, str) or not isinstance(aliases, Sequence):
        raise StorageError(f"aliases must be a list of names, got {aliases!r}")
    names: list[str] = []
    for name in aliases:
        check_alias_name(name)
        if name not in names:
            names.append(name)
    return names


def _check_work_name(name: object) -> str:
    if not isinstance(name, str) or _WORK_NAME_RE.fullmatch(name) is None or ".." in name:
        raise StorageError(
            f"bad work directory name {name!r}: use letters, digits, '.', '_' and '-'"
        )
    return name


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays (losses, accuracies) are common in summaries; accept them
    # without importing numpy here.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} value {value!r:.80} is not JSON serializable")


def _to_json(value: Any, what: str) -> bytes:
    try:
        text = json.dumps(value, indent=2, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as error:
        raise StorageError(f"{what} cannot be stored as JSON: {error}") from None
    return (text + "\n").encode()


def _manifest_problem(data: Any, kind: str, version_id: str) -> str | None:
    """Why ``data`` is not a valid manifest of ``kind``/``version_id`` (None if it is)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != FORMAT:
        return f"unsupported format {data.get('format')!r} (expected {FORMAT})"
    if data.get("kind") != kind or data.get("id") != version_id:
        return f"describes {data.get('kind')!r}/{data.get('id')!r}, not this version"
    for key, types in (
        ("created_at", str),
        ("code_version", str),
        ("files", dict),
        ("parents", dict),
        ("params", dict),
        ("summary", dict),
    ):
        if not isinstance(data.get(key), types):
            return f"field {key!r} is missing or not a {types.__name__}"
    if data.get("seed") is not None and not isinstance(data["seed"], int):
        return f"field 'seed' is not an int: {data['seed']!r}"
    for rel, entry in data["files"].items():
        parts = rel.split("/")
        if rel == MANIFEST or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            return f"bad file name {rel!r}"
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("size"), int)
            and entry["size"] >= 0
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            and set(entry["sha256"]) <= _HEX
        ):
            return f"bad entry for file {rel!r}: {entry!r}"
    for parent_kind, ids in data["parents"].items():
        if parent_kind not in KINDS or not isinstance(ids, list):
            return f"bad parents entry {parent_kind!r}: {ids!r}"
        if not all(is_version_id(i) for i in ids):
            return f"bad parent id in {parent_kind!r}: {ids!r}"
    return None


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
