"""The versioned, immutable artifact store (see the package docstring for the on-disk layout).

`Store` is the one entry point; each concern lives in its own module and the store wires
them to its root:

| concern | module |
| --- | --- |
| publishing: staging, sealing, the atomic rename | here (`Store.publish`, `Staging`) |
| manifests: hashing, writing, checking | storage.manifests |
| aliases and their history | storage.aliases |
| locks: per kind, and a claim per staging directory | storage.locks |
| integrity checks (`verify`) | storage.verify |
| garbage collection (`gc`) | storage.gc |
| clean-up after killed processes | storage.staging |
| work directories of resumable jobs | storage.workdirs |
| the live feeds' validators and item buffer | storage.feeds |

A version is written into a private staging directory, hashed, fsynced, described by a
``manifest.json`` written last, and only then renamed into place in one atomic step. A version
directory that is visible under ``<root>/<kind>/`` is therefore always complete; anything
interrupted stays in ``.staging`` where ``clean_staging`` finds it once its owner is gone.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import aliases as alias_files
from storage import staging as staging_cleanup
from storage import workdirs
from storage.aliases import UNCHECKED, Unchecked
from storage.backend import is_store_url
from storage.errors import CorruptVersionError, StorageError
from storage.feeds import FeedState
from storage.fsutil import fsync_dir
from storage.gc import Version, plan_gc
from storage.ids import KINDS, check_alias_name, check_kind, is_version_id, new_version_id
from storage.layout import GC_SUFFIX, STAGING_DIR, Inbox
from storage.locks import KindLocks, claim
from storage.manifests import build_manifest, read_manifest, seal
from storage.owners import owner_tag
from storage.references import VersionLookup
from storage.verify import Problem, verify_kinds, version_problems

__all__ = ["Problem", "Staging", "Store"]

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


@dataclass(frozen=True)
class Staging:
    """What ``Store.publish`` yields: write files under ``path``, fill ``summary``."""

    path: Path
    summary: dict
    id: str
    kind: str

    def copy_in(self, source: str | Path, name: str | Path) -> Path:
        """Copy the file or folder `source` to `name` inside the staging directory."""
        target = self.path / name
        if Path(source).is_dir():
            shutil.copytree(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return target


class Store(VersionLookup):
    """A directory of immutable, versioned artifacts with aliases and lineage."""

    def __new__(cls, root: str | Path) -> Store:
        # A URL opens an object store (storage.object_store) with the same public API, so
        # every caller, the CLI's --storage and $CHARLM_STORAGE accept both.
        if cls is Store and is_store_url(root):
            from storage.object_store import ObjectStore

            return ObjectStore(str(root))  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(self, root: str | Path) -> None:
        # Made absolute up front so that a later chdir (Prefect workers, tests) cannot silently
        # move the store; this reads the cwd but touches nothing on disk.
        self.root: Path = Path(os.path.abspath(Path(root).expanduser()))
        self._locks = KindLocks(self.root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- publishing --------------------------------------------------------------------------

    @contextmanager
    def publish(
        self,
        kind: str,
        *,
        parents: Mapping[str, Sequence[str]] | None = None,
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
        aliases: Sequence[str] = ("latest",),
        expect: Mapping[str, str | None] | None = None,
    ) -> Iterator[Staging]:
        """Create a new version of ``kind``; see the package docstring for the protocol.

        ``parents`` maps kinds to version ids (aliases and unique prefixes are resolved to ids
        now). On normal exit of the ``with`` block the files written under ``staging.path``
        become the new version and every name in ``aliases`` points to it. If the block raises,
        the staging directory is removed and the exception propagates; nothing becomes visible.
        ``expect`` maps alias names of ``kind`` to the version id (None: unset) the caller
        built on; if one has moved when the version would become visible (checked under the
        kind's lock, with the rename), `AliasMovedError` is raised and nothing is published,
        so two writers building on "latest" cannot silently drop each other's work.
        """
        alias_names, parent_ids, params = self._check_publish(kind, aliases, expect, parents,
                                                              params, seed)

        version_id = new_version_id()
        visible = False
        try:
            self.clean_staging()
            staging_root = self._kind_dir(kind) / STAGING_DIR
            staging_root.mkdir(parents=True, exist_ok=True)
            with claim(staging_root / f"{version_id}.{owner_tag()}") as path:
                try:
                    path.mkdir()
                    staging = Staging(path=path, summary={}, id=version_id, kind=kind)
                    yield staging
                    seal(path, build_manifest(kind, version_id, path, parent_ids, params, seed,
                                              staging.summary))
                    with self._locks.held(kind):
                        # gc may have dropped a parent while the caller was busy; it cannot do
                        # so now (it needs this lock too), so check and rename are atomic.
                        self._check_parents_exist(kind, parent_ids)
                        self._check_expected(kind, expect or {})
                        os.rename(path, self._kind_dir(kind) / version_id)
                        visible = True
                        fsync_dir(self._kind_dir(kind))
                        for name in alias_names:
                            alias_files.write_alias(self._kind_dir(kind), name, version_id)
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

    # -- reading -----------------------------------------------------------------------------

    def path(self, kind: str, ref: str, *, verify: bool = True) -> Path:
        """The directory of version ``ref``; with ``verify``, check every file's checksum first."""
        version_id = self.resolve(kind, ref)
        if verify:
            problems = version_problems(self.root, kind, version_id, check_parents=False)
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

    # -- aliases -----------------------------------------------------------------------------

    def aliases(self, kind: str) -> dict[str, str]:
        """Alias name -> version id, including aliases whose version no longer exists."""
        check_kind(kind)
        result = {}
        for name in alias_files.alias_names(self._kind_dir(kind)):
            try:
                target = alias_files.read_alias(self._kind_dir(kind), kind, name)
            except StorageError:
                continue  # verify() reports unreadable alias files
            if target is not None:
                result[name] = target
        return result

    def set_alias(self, kind: str, name: str, version_id: str, reason: str = "", *,
                  expect: str | None | Unchecked = UNCHECKED) -> None:
        """Point alias ``name`` at an existing version (atomic, under the kind's lock) and
        record the change, with `reason`, in the kind's alias history.

        With ``expect`` (a version id, or None: the alias must not exist yet) this is a
        compare-and-swap: the alias moves only if it still holds ``expect`` when the lock is
        held, else `AliasMovedError` is raised and nothing changes, so a caller that decided
        on the alias's old target cannot overwrite a newer decision.
        """
        check_kind(kind)
        check_alias_name(name)
        if not isinstance(version_id, str) or not is_version_id(version_id):
            raise StorageError(
                f"cannot set {kind} alias {name!r}: {version_id!r} is not a version id"
            )
        if not (self._kind_dir(kind) / version_id).is_dir():
            raise StorageError(self._not_found(kind, version_id))
        with self._locks.held(kind):
            if not (self._kind_dir(kind) / version_id).is_dir():  # gc may have been faster
                raise StorageError(self._not_found(kind, version_id))
            if expect is not UNCHECKED:
                self._check_expected(kind, {name: expect}, f"set {kind} alias {name!r}")
            try:
                previous = self.aliases(kind).get(name)
                alias_files.write_alias(self._kind_dir(kind), name, version_id)
                alias_files.append_history(self._kind_dir(kind), name, version_id, previous,
                                           reason)
            except OSError as error:
                if error.errno not in _DISK_FULL:
                    raise
                raise StorageError(
                    f"disk full while setting {kind} alias {name!r}: {error}"
                ) from error

    def alias_history(self, kind: str, name: str | None = None) -> list[dict]:
        """Changes made by `set_alias` to alias `name` (every alias when None), oldest first:
        dicts with time, alias, id, previous and reason."""
        check_kind(kind)
        return alias_files.read_history(self._kind_dir(kind), name)

    # -- integrity and clean-up --------------------------------------------------------------

    def verify(self, kind: str | None = None, *, quick: bool = False) -> list[Problem]:
        """Check every version of ``kind`` (default: all kinds, and the feed buffer) and its
        aliases against disk; ``quick`` reads manifests, not files (nothing is hashed)."""
        kinds = KINDS if kind is None else (check_kind(kind),)
        problems = verify_kinds(self.root, kinds, check_files=not quick)
        return problems + (self.feeds.problems() if kind is None else [])

    def gc(self, keep: int = 5, apply: bool = False) -> list[Version]:
        """The (kind, id) pairs that are (``apply``) or would be (dry run) removed, in the
        order they are removed (children before parents; see storage.gc)."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise StorageError(f"keep must be a non-negative int, got {keep!r}")
        if not self.root.is_dir():
            return []
        if not apply:
            return self._gc_plan(keep)
        with ExitStack() as claims:
            trash = []
            with self._locks.held(*KINDS):
                doomed = self._gc_plan(keep)
                for kind, version_id in doomed:
                    staging_root = self._kind_dir(kind) / STAGING_DIR
                    staging_root.mkdir(exist_ok=True)
                    # Renaming into staging makes the removal atomic for readers; the slow
                    # rmtree happens after the kind locks are released. Should this process
                    # die first, clean_staging finishes the job.
                    target = claims.enter_context(
                        claim(staging_root / f"{version_id}.{owner_tag()}{GC_SUFFIX}")
                    )
                    os.rename(self._kind_dir(kind) / version_id, target)
                    trash.append(target)
                for kind in {k for k, _ in doomed}:
                    fsync_dir(self._kind_dir(kind))
            for target in trash:
                shutil.rmtree(target, ignore_errors=True)
        return doomed

    def _gc_plan(self, keep: int) -> list[Version]:
        aliased = [(kind, target) for kind in KINDS for target in self.aliases(kind).values()]
        return plan_gc({kind: self._ids(kind) for kind in KINDS}, aliased, keep,
                       self._read_manifest)

    def clean_staging(self) -> int:
        """Remove staging directories left behind by killed processes; return how many
        (see storage.staging: a publish in progress in a live process is never touched)."""
        return staging_cleanup.clean_staging(self.root)

    def exists(self) -> bool:
        """Whether the store's directory exists yet."""
        return self.root.is_dir()

    # -- the inbox and work directories ------------------------------------------------------

    @property
    def inbox(self) -> Path:
        """``<root>/inbox``: where new headline CSVs are dropped for the ingest flow.

        Not created here; processed files are moved to ``inbox/processed/<dataset id>/``.
        """
        return Inbox.at(self.root).directory

    @property
    def feeds(self) -> FeedState:
        """The live feeds' state: validators per URL and the item buffer (storage.feeds)."""
        return FeedState(self)

    def work_dir(self, name: str) -> Path:
        """A persistent scratch directory ``<root>/.work/<name>``, created if missing (for
        resumable jobs; see storage.workdirs). Call ``remove_work_dir`` once the job's result
        is published."""
        return workdirs.work_dir(self.root, name)

    def remove_work_dir(self, work_dir: str | Path) -> None:
        """Delete a directory made by ``work_dir`` (given as its name or its path)."""
        workdirs.remove_work_dir(self.root, work_dir)

    def save_work_dir(self, work_dir: str | Path) -> None:
        """Make a work directory's current content durable in the store: nothing to do
        here (it lives in the store already); an object store uploads it."""

    # -- helpers -----------------------------------------------------------------------------

    def _kind_dir(self, kind: str) -> Path:
        return self.root / kind

    def _has_version(self, kind: str, version_id: str) -> bool:
        return (self._kind_dir(kind) / version_id).is_dir()

    def _read_alias(self, kind: str, name: str) -> str | None:
        return alias_files.read_alias(self._kind_dir(kind), kind, name)

    def _ids(self, kind: str) -> list[str]:
        kind_dir = self._kind_dir(kind)
        try:
            entries = os.listdir(kind_dir)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if is_version_id(e) and (kind_dir / e).is_dir())

    def _read_manifest(self, kind: str, version_id: str) -> dict:
        return read_manifest(self._kind_dir(kind) / version_id, kind, version_id)
