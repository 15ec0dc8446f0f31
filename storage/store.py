"""The versioned, immutable artifact store: one engine over any byte backend.

`Store(root)` opens a directory or an object store URL (storage.backend) and runs one protocol
over either (docs/storage.md): publish (files, then one log entry that commits the version and
moves its aliases), aliases and their history (`set_alias`: one entry each), pins, verify
(every file hashed on every backend), gc (removals committed as one entry before any file
goes; uploads no entry commits given up only after the retention), work directories, the feed
buffer (storage.feeds) and the inbox (storage.inbox).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from storage import log
from storage.backend import Backend, ObjectMissing, WriteConflict, open_backend
from storage.cache import FileCache, store_key
from storage.errors import AliasMovedError, CorruptVersionError, Problem, StorageError
from storage.feeds import FeedState
from storage.fsutil import DISK_FULL, sha256_file
from storage.gc import Version, plan_gc
from storage.ids import (
    KINDS,
    check_alias_name,
    check_kind,
    is_alias_name,
    is_version_id,
    looks_like_id_prefix,
    new_version_id,
)
from storage.inbox import Inbox
from storage.layout import ALIAS_HISTORY_FILE, ALIASES_DIR, MANIFEST
from storage.log import State
from storage.manifests import build_manifest, parse_manifest, seal, to_json
from storage.workdirs import MirroredWorkDirs

__all__ = ["UNCHECKED", "Problem", "Staging", "Store"]

UPLOADS = 8  # files of one version uploaded at once (latency, not bandwidth, bounds them)
COMMIT_TIMEOUT_S = 300.0  # losing the race for the next log entry this long means a stampede
# Uploads no entry commits are given up by gc only once this old: no publish takes a week (and
# one caught anyway is refused at its commit, never committed with missing files).
UPLOAD_RETENTION_S = 7 * 86400.0
PIN_HOURS = 7 * 24.0  # a pin a killed job never released lapses after this
UNCHECKED: Any = object()  # set_alias's default `expect`: move the alias whatever it holds


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


@dataclass
class _Shared:
    """What every Store object of one store shares within a process: the log's state and
    the manifests read so far (immutable once committed)."""

    state: State | None = None
    legacy: State | None = None
    manifests: dict[Version, tuple[dict, bytes]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


_SHARED: dict[str, _Shared] = {}
_SHARED_GUARD = threading.Lock()


class Store(MirroredWorkDirs):
    """Versions, aliases, work directories and the feed buffer of the store at `root`: a
    directory, or an object store URL (s3://, gs://, az://, https://, memory://)."""

    def __init__(self, root: str | Path, *, backend: Backend | None = None,
                 cache: FileCache | None = None) -> None:
        self.backend = backend or open_backend(root)
        self.local: Path | None = self.backend.local_root
        self.root: str = self.backend.url  # what messages name the store by (no credentials)
        self._cache = cache
        self._key = store_key(str(self.local or self.backend.url))
        with _SHARED_GUARD:
            self._shared = _SHARED.setdefault(f"{type(self.backend).__name__}:{self._key}",
                                              _Shared())

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    @property
    def cache(self) -> FileCache:
        """The host cache of an object store's files (a directory store needs none)."""
        if self._cache is None:
            self._cache = FileCache.default()
        return self._cache

    # -- the log -----------------------------------------------------------------------

    def _state(self) -> State:
        """The log's state now: the entries committed since this process last looked are
        read (one request when there are none)."""
        shared = self._shared
        with shared.lock:
            state = shared.state
            if state is None or (self.local and state.seq >= 0 and not
                                 (self.local / log.entry_key(state.seq)).exists()):
                state = self._load()  # first look, or the directory was emptied meanwhile
            while True:
                try:
                    data, _ = self.backend.get(log.entry_key(state.seq + 1))
                except ObjectMissing:
                    break
                state = log.apply(state, self._parse_entry(data, state.seq + 1), self.root)
            if state.seq < 0:
                state = self._legacy()
            shared.state = state
            return state

    def _parse_entry(self, data: bytes, seq: int) -> dict:
        with suppress(ValueError):
            if isinstance(entry := json.loads(data), dict):
                return entry
        raise StorageError(f"store {self.root}: log entry {seq} is not a JSON object")

    def _load(self) -> State:
        """The state from the newest checkpoint and the entries after it."""
        state = State()
        try:
            hint = int(self.backend.get(log.LAST_CHECKPOINT)[0])
            data = self.backend.get(log.checkpoint_key(hint))[0]
            state = State.from_json(data, f"{self.root}/{log.checkpoint_key(hint)}")
        except (ObjectMissing, ValueError):
            keys = [log.parse_seq(i.key) for i in self.backend.list(f"{log.LOG_DIR}/")]
            checkpoints = [seq for seq, is_checkpoint in filter(None, keys) if is_checkpoint]
            if checkpoints:
                key = log.checkpoint_key(max(checkpoints))
                state = State.from_json(self.backend.get(key)[0], f"{self.root}/{key}")
        offset = log.entry_key(state.seq) if state.seq >= 0 else None
        tail = sorted(seq for seq, is_checkpoint in
                      filter(None, (log.parse_seq(i.key) for i in
                                    self.backend.list(f"{log.LOG_DIR}/", offset)))
                      if not is_checkpoint and seq > state.seq)
        with ThreadPoolExecutor(UPLOADS) as pool:
            entries = list(pool.map(lambda s: self.backend.get(log.entry_key(s))[0], tail))
        for seq, data in zip(tail, entries):
            state = log.apply(state, self._parse_entry(data, seq), self.root)
        return state

    def _legacy(self) -> State:
        """A store written before the log: versions with a manifest, alias files and alias
        history files, read once per process (only an old release writes them)."""
        if self._shared.legacy is None:
            versions, aliases, history = {}, {}, {}
            for kind in KINDS:
                keys = [i.key for i in self.backend.list(f"{kind}/") if i.key.count("/") == 2]
                versions[kind] = [k.split("/")[1] for k in keys if k.endswith(f"/{MANIFEST}")]
                named = {k.rsplit("/", 1)[1]: self.backend.get(k)[0].decode("utf-8", "replace")
                         for k in keys if k.startswith(f"{kind}/{ALIASES_DIR}/")}
                aliases[kind] = {n: t.strip() for n, t in named.items()
                                 if is_version_id(t.strip())}
                try:
                    raw = self.backend.get(f"{kind}/{ALIAS_HISTORY_FILE}")[0]
                except ObjectMissing:
                    raw = b""
                history[kind] = log.parse_history(raw)
            imported = log.legacy_state(versions, aliases, history)
            self._shared.legacy = log.apply(State(seq=-2), {"seq": -1, "actions": [imported]})
        return self._shared.legacy

    def _commit(self, plan: Callable[[State], list[dict]]) -> State:
        """Write `plan(state)`'s actions as the next log entry, planning again on the newer
        state whenever another writer took that entry first; the state after it."""
        deadline = time.monotonic() + COMMIT_TIMEOUT_S
        attempt = 0
        fresh = False
        while True:
            # Optimistic: first the state this process saw last. If another writer committed
            # since, the entry's key is taken and the write fails (or the plan, made on old
            # news, refuses): the next round reads what is new.
            cached = self._shared.state
            state = cached if not fresh and cached is not None and cached.seq >= 0 \
                else self._state()
            try:
                actions = plan(state)
            except StorageError:
                if fresh or state is not cached:
                    raise
                fresh = True
                continue
            fresh = True
            if not actions:
                return state
            if state.seq < 0 and any(any(part.values()) for part in
                                     (state.versions, state.aliases, state.history)):
                # The first entry of a store written before the log imports what it held.
                actions = [log.legacy_state(state.versions, state.aliases, state.history),
                           *actions]
            entry = {"seq": state.seq + 1, "time": log.now_iso(),
                     "by": f"{os.getpid()}@{os.uname().nodename}", "actions": actions}
            try:
                self.backend.put(log.entry_key(state.seq + 1),
                                 json.dumps(entry, sort_keys=True).encode() + b"\n", "create")
            except WriteConflict:
                if time.monotonic() > deadline:
                    raise StorageError(f"store {self.root}: gave up committing after "
                                       f"{COMMIT_TIMEOUT_S:.0f} s of contention") from None
                # Jittered, so that writers that collided do not collide again in lockstep.
                time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))
                attempt += 1
                continue
            with self._shared.lock:
                new = log.apply(state, entry, self.root)
                if self._shared.state is None or self._shared.state.seq < new.seq:
                    self._shared.state = new
            if new.seq > 0 and new.seq % log.CHECKPOINT_EVERY == 0:
                self._checkpoint(new)
            return new

    def _checkpoint(self, state: State) -> None:
        try:
            self.backend.put(log.checkpoint_key(state.seq), state.to_json())
            self.backend.put(log.LAST_CHECKPOINT, f"{state.seq}\n".encode())
        except StorageError:
            pass  # a missing checkpoint costs the next reader a longer replay, nothing more

    # -- publishing --------------------------------------------------------------------

    @contextmanager
    def publish(self, kind: str, *, parents: Mapping[str, Sequence[str]] | None = None,
                params: Mapping[str, Any] | None = None, seed: int | None = None,
                aliases: Sequence[str] = ("latest",),
                expect: Mapping[str, str | None] | None = None) -> Iterator[Staging]:
        """Create a version of `kind`: write its files under ``staging.path``; on normal exit
        of the block they are hashed, stored and committed with `aliases` pointing to it (if
        the block raises, nothing becomes visible). `parents` maps kinds to refs. `expect`
        maps alias names to the id (None: unset) the caller built on: if one moved before the
        commit, `AliasMovedError` and nothing is published."""
        check_kind(kind)
        alias_names = _check_alias_list(aliases)
        expected = dict(expect or {})
        _check_alias_list(list(expected))
        parent_ids = self._resolve_parents(kind, parents)
        params = dict(params or {})
        to_json(params, f"params of the new {kind} version")  # fail now, not after training
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise StorageError(f"seed must be an int or None, got {seed!r}")
        known = self._shared.state
        if known is None or known.seq < 0:  # a log that has begun never goes back
            # The log begins before the first upload: without it, a reader would take an
            # upload's manifest for a version of a store written before the log.
            self._commit(lambda state: [{"op": "begin"}] if state.seq < 0 else [])
        version_id = new_version_id()
        path = self.local / kind / version_id if self.local else self.cache.staging_dir()
        committed = False
        try:
            path.mkdir(parents=True, exist_ok=True)
            staging = Staging(path=path, summary={}, id=version_id, kind=kind)
            yield staging
            manifest = build_manifest(kind, version_id, path, parent_ids, params, seed,
                                      staging.summary)
            data = to_json(manifest, f"summary of the new {kind} version")
            self._store_files(kind, version_id, path, manifest, data)

            def plan(state: State) -> list[dict]:
                if state.dead(kind, version_id):
                    raise StorageError(f"cannot publish {kind}: gc gave up version "
                                       f"{version_id}'s upload (older than its retention)")
                for parent_kind, ids in parent_ids.items():
                    for parent in ids:
                        if not state.has(parent_kind, parent):
                            raise StorageError(
                                f"cannot publish {kind}: parent {parent_kind} version "
                                f"{parent} was removed while publishing (by gc?)")
                self._check_expected(state, kind, expected)
                return [{"op": "add", "kind": kind, "id": version_id,
                         "manifest": hashlib.sha256(data).hexdigest()},
                        *({"op": "alias", "kind": kind, "name": name, "id": version_id}
                          for name in alias_names)]

            try:
                self._commit(plan)
            except BaseException:
                # A failed request may still have written the entry: look before undoing.
                try:
                    committed = self._state().has(kind, version_id)
                except StorageError:
                    committed = True  # unknown: leave the files to gc's retention
                raise
            committed = True
            if not self.local:
                self._shared.manifests[(kind, version_id)] = (manifest, data)
                self._keep_local_copy(path, kind, version_id, manifest, data)
        except OSError as error:
            if error.errno not in DISK_FULL:
                raise
            raise StorageError(f"disk full while publishing {kind}: {error}") from error
        finally:
            if self.local:
                if not committed:
                    shutil.rmtree(path, ignore_errors=True)
            else:
                shutil.rmtree(path, ignore_errors=True)
                if not committed:
                    self._delete_prefix(f"{kind}/{version_id}/")

    def _store_files(self, kind: str, version_id: str, path: Path, manifest: dict,
                     data: bytes) -> None:
        """Make the files and the manifest durable at their keys (not yet committed)."""
        if self.local:
            seal(path, manifest)  # the staging folder is the version's own: fsync it all
            return
        keys = [(f"{kind}/{version_id}/{rel}", path / rel) for rel in manifest["files"]]
        keys.append((f"{kind}/{version_id}/{MANIFEST}", data))
        with ThreadPoolExecutor(UPLOADS) as pool:
            list(pool.map(lambda pair: self.backend.put(pair[0], pair[1], "create"), keys))

    def _keep_local_copy(self, path: Path, kind: str, version_id: str, manifest: dict,
                         data: bytes) -> None:
        """The publisher's files become the cached copy of the version (no download)."""
        for rel, entry in manifest["files"].items():
            self.cache.adopt(path / rel, entry["sha256"])
        (path / MANIFEST).write_bytes(data)
        final = self.cache.version_dir(self._key, kind, version_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, final)
        except OSError:
            pass  # another process materialised it first; ours is removed with staging

    def _delete_prefix(self, prefix: str) -> None:
        """Delete a version's files (`prefix`: "<kind>/<id>/"), best effort."""
        try:
            for info in self.backend.list(prefix):
                self.backend.delete(info.key)
        except StorageError:
            pass  # what is left is an upload no entry commits: gc gives it up later
        if self.local:  # folders a killed writer made but never filled hold no key
            shutil.rmtree(self.local / prefix, ignore_errors=True)

    # -- resolving references ----------------------------------------------------------

    def resolve(self, kind: str, ref: str) -> str:
        """The version id that `ref` (id, alias name or unique id prefix) stands for."""
        check_kind(kind)
        if not isinstance(ref, str) or not ref:
            raise StorageError(f"bad {kind} reference {ref!r}: expected a version id or alias")
        state = self._state()
        if is_version_id(ref):
            if state.has(kind, ref):
                return ref
        elif looks_like_id_prefix(ref):
            matches = [i for i in state.versions[kind] if i.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise StorageError(
                    f"ambiguous {kind} id prefix {ref!r}: matches {len(matches)} versions "
                    f"({', '.join(matches[:5])}{', ...' if len(matches) > 5 else ''})")
        elif is_alias_name(ref):
            target = state.aliases[kind].get(ref)
            if target is not None:
                if not state.has(kind, target):
                    raise StorageError(f"{kind} alias {ref!r} points to missing version {target}")
                return target
        raise StorageError(self._not_found(state, kind, ref))

    def _not_found(self, state: State, kind: str, ref: str) -> str:
        ids = state.versions[kind]
        message = f"unknown {kind} version or alias {ref!r} in store {self.root}"
        if not ids:
            return f"{message}; there are no {kind} versions yet"
        aliases = ", ".join(f"{n} -> {t}" for n, t in sorted(state.aliases[kind].items()))
        return (f"{message}; {len(ids)} version(s) exist, newest: {', '.join(ids[-5:])}; "
                f"aliases: {aliases or 'none'}")

    def _resolve_parents(self, kind: str,
                         parents: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
        if parents is None:
            return {}
        if not isinstance(parents, Mapping):
            raise StorageError(f"parents must map kinds to lists of ids, got {parents!r}")
        resolved: dict[str, list[str]] = {}
        for parent_kind, refs in parents.items():
            check_kind(parent_kind)
            if isinstance(refs, str) or not isinstance(refs, Sequence):
                raise StorageError(f"parents[{parent_kind!r}] must be a list of ids, got {refs!r}")
            known = self._shared.state
            ids = []
            for ref in refs:
                if known is not None and is_version_id(ref) and known.has(parent_kind, ref):
                    ids.append(ref)  # an id this process saw committed (rechecked at commit)
                    continue
                try:
                    ids.append(self.resolve(parent_kind, ref))
                except StorageError as error:
                    raise StorageError(f"cannot publish {kind}: parent {parent_kind} {ref!r} "
                                       f"does not exist ({error})") from None
            resolved[parent_kind] = list(dict.fromkeys(ids))
        return resolved

    def _check_expected(self, state: State, kind: str, expect: Mapping[str, str | None],
                        action: str = "") -> None:
        for name, expected in expect.items():
            current = state.aliases[kind].get(name)
            if current != expected:
                what = action or f"publish {kind}"
                built = "this version was built" if not action else "the caller decided"
                raise AliasMovedError(f"cannot {what}: alias {name!r} moved to "
                                      f"{current or '(unset)'} while {built} on "
                                      f"{expected or '(unset)'}")

    # -- reading -----------------------------------------------------------------------

    def _manifest(self, kind: str, version_id: str, *, fresh: bool = False
                  ) -> tuple[dict, bytes]:
        """A version's manifest and its bytes; an object store's kept in memory once read (it
        never changes), a directory's and `fresh` ones read each time (damage is noticed)."""
        cached = self._shared.manifests.get((kind, version_id))
        if cached is not None and not fresh and not self.local:
            return cached
        try:
            data = self.backend.get(f"{kind}/{version_id}/{MANIFEST}")[0]
        except ObjectMissing:
            raise CorruptVersionError(kind, version_id, MANIFEST, "missing") from None
        manifest = parse_manifest(data, kind, version_id)
        if not self.local:
            self._shared.manifests[(kind, version_id)] = (manifest, data)
        return manifest, data

    def manifest(self, kind: str, ref: str) -> dict:
        return self._manifest(kind, self.resolve(kind, ref))[0]

    def versions(self, kind: str) -> list[dict]:
        """Manifests of every version of `kind`, oldest first."""
        check_kind(kind)
        return [self._manifest(kind, i)[0] for i in self._state().versions[kind]]

    def path(self, kind: str, ref: str, *, verify: bool = True) -> Path:
        """A local directory holding version `ref` (an object store's: the host cache's copy);
        with `verify`, every file is checked against the manifest's sha256 first."""
        version_id = self.resolve(kind, ref)
        manifest, data = self._manifest(kind, version_id)
        if self.local:
            if verify:
                problems = self._file_problems(kind, version_id, manifest)
                if problems:
                    more = f" (and {len(problems) - 1} more problem(s))" \
                        if len(problems) > 1 else ""
                    raise CorruptVersionError(kind, version_id, problems[0].file,
                                              problems[0].reason + more)
            return self.local / kind / version_id

        def fetch(rel: str, target: Path) -> None:
            self.backend.get_file(f"{kind}/{version_id}/{rel}", target)

        try:
            return self.cache.materialise(self._key, kind, version_id, manifest, data, fetch,
                                          verify)
        except ValueError as error:
            if isinstance(error, StorageError):
                raise
            raise CorruptVersionError(kind, version_id, "", str(error)) from None

    def exists(self) -> bool:
        """Whether anything is stored yet."""
        if self.local:
            return self.local.is_dir()
        state = self._state()
        return state.seq >= 0 or any(state.versions.values())

    # -- aliases -----------------------------------------------------------------------

    def aliases(self, kind: str) -> dict[str, str]:
        """Alias name -> version id."""
        check_kind(kind)
        return dict(sorted(self._state().aliases[kind].items()))

    def set_alias(self, kind: str, name: str, version_id: str, reason: str = "", *,
                  expect: Any = UNCHECKED) -> None:
        """Point alias `name` at a version and record it, with `reason`, in the alias history
        (one entry: never apart). With `expect` (an id, or None: unset) a compare-and-swap:
        the alias moves only if it still holds `expect`, else `AliasMovedError`."""
        check_kind(kind)
        check_alias_name(name)
        if not isinstance(version_id, str) or not is_version_id(version_id):
            raise StorageError(f"cannot set {kind} alias {name!r}: {version_id!r} is not a "
                               "version id")

        def plan(state: State) -> list[dict]:
            if not state.has(kind, version_id):
                raise StorageError(self._not_found(state, kind, version_id))
            if expect is not UNCHECKED:
                self._check_expected(state, kind, {name: expect}, f"set {kind} alias {name!r}")
            return [{"op": "alias", "kind": kind, "name": name, "id": version_id,
                     "record": True, "reason": reason}]

        self._commit(plan)

    def alias_history(self, kind: str, name: str | None = None) -> list[dict]:
        """`set_alias`'s changes of `name` (of every alias: None), oldest first: dicts with
        time, alias, id, previous and reason."""
        check_kind(kind)
        return [dict(r) for r in self._state().history[kind]
                if name is None or r["alias"] == name]

    # -- pins --------------------------------------------------------------------------

    def pin(self, kind: str, ref: str, holder: str, hours: float = PIN_HOURS) -> str:
        """Keep version `ref` through gc until `unpin` (or `hours`: a killed holder); a token."""
        version_id = self.resolve(kind, ref)
        token = secrets.token_hex(8)
        until = (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat()

        def plan(state: State) -> list[dict]:
            if not state.has(kind, version_id):
                raise StorageError(self._not_found(state, kind, version_id))
            return [{"op": "pin", "kind": kind, "id": version_id, "token": token,
                     "until": until, "holder": holder}]

        self._commit(plan)
        return token

    def unpin(self, token: str) -> None:
        self._commit(lambda state: [{"op": "unpin", "token": token}]
                     if token in state.pins else [])

    @contextmanager
    def pinned(self, kind: str, ref: str, holder: str) -> Iterator[str]:
        """Version `ref`'s id, kept through gc while the block runs."""
        token = self.pin(kind, ref, holder)
        try:
            yield self.resolve(kind, ref)
        finally:
            self.unpin(token)

    def pins(self) -> list[dict]:
        """The pins in force: kind, id, until and holder each."""
        return [dict(p) for p in self._state().pins.values()]

    # -- integrity and clean-up --------------------------------------------------------

    def verify(self, kind: str | None = None, *, quick: bool = False) -> list[Problem]:
        """Every version of `kind` (default: all, and the feed buffer) against its manifest:
        each file present with its size and sha256, no other file, parents and aliases
        whole (``quick``: manifests, parents and aliases only)."""
        kinds = KINDS if kind is None else (check_kind(kind),)
        state = self._state()
        problems: list[Problem] = []
        for k in kinds:
            listing = self._listing(k)
            problems += [Problem(k, entry, "", "unexpected entry in the store")
                         for entry in sorted(listing) if not is_version_id(entry)]
            for version_id in state.versions[k]:
                try:
                    manifest = self._manifest(k, version_id, fresh=True)[0]
                except CorruptVersionError as error:
                    problems.append(Problem(k, version_id, error.file, error.reason))
                    continue
                if not quick:
                    problems += self._file_problems(k, version_id, manifest,
                                                    listing.get(version_id, {}))
                for parent_kind, ids in manifest["parents"].items():
                    problems += [Problem(k, version_id, MANIFEST, f"parent {parent_kind} "
                                         f"version {i} is missing")
                                 for i in ids if not state.has(parent_kind, i)]
            for name, target in sorted(state.aliases[k].items()):
                if not state.has(k, target):
                    problems.append(Problem(k, target, f"{ALIASES_DIR}/{name}",
                                            f"alias {name!r} points to a missing version"))
        return problems + (self.feeds.problems() if kind is None else [])

    def _listing(self, kind: str) -> dict[str, dict[str, int]]:
        """{first key part under `kind`/: {file in it: size}}, dot names left out."""
        found: dict[str, dict[str, int]] = {}
        for info in self.backend.list(f"{kind}/"):
            first, _, rest = info.key[len(kind) + 1:].partition("/")
            if not first.startswith("."):
                found.setdefault(first, {})[rest] = info.size
        return found

    def _file_problems(self, kind: str, version_id: str, manifest: dict,
                       listed: dict[str, int] | None = None) -> list[Problem]:
        """Each file of a version against its manifest: present, same size, same sha256."""
        if listed is None:
            listed = {i.key.split("/", 2)[2]: i.size
                      for i in self.backend.list(f"{kind}/{version_id}/")}
        problems = []
        for rel, entry in manifest["files"].items():
            key = f"{kind}/{version_id}/{rel}"
            if rel not in listed:
                problems.append(Problem(kind, version_id, rel, "missing"))
            elif listed[rel] != entry["size"]:
                problems.append(Problem(kind, version_id, rel, f"size is {listed[rel]} bytes, "
                                                               f"manifest says {entry['size']}"))
            elif self._sha256(key) != entry["sha256"]:
                problems.append(Problem(kind, version_id, rel, "sha256 does not match manifest"))
        problems += [Problem(kind, version_id, rel, "unexpected file not in manifest")
                     for rel in sorted(set(listed) - set(manifest["files"]) - {MANIFEST})]
        return problems

    def _sha256(self, key: str) -> str:
        if self.local:
            return sha256_file(self.local / key)
        return hashlib.sha256(self.backend.get(key)[0]).hexdigest()

    def gc(self, keep: int = 5, apply: bool = False,
           retention_s: float = UPLOAD_RETENTION_S) -> list[Version]:
        """The (kind, id) pairs (``apply``: removed, else would be) that no alias, pin or the
        newest `keep` of a kind needs (storage.gc). Applied, the removal is one entry, then
        the files go, then `clean_staging(retention_s)`."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise StorageError(f"keep must be a non-negative int, got {keep!r}")
        if not isinstance(retention_s, (int, float)) or retention_s < 0:
            raise StorageError(f"retention must be a non-negative number of seconds, "
                               f"got {retention_s!r}")
        doomed: list[Version] = []

        def plan(state: State) -> list[dict]:
            now = datetime.now(timezone.utc)
            kept = [(k, t) for k in KINDS for t in state.aliases[k].values()]
            doomed[:] = plan_gc(state.versions, kept + state.pinned(now), keep,
                                lambda k, i: self._manifest(k, i)[0])
            lapsed = [t for t, p in state.pins.items() if datetime.fromisoformat(p["until"])
                      <= now]
            return ([{"op": "remove", "kind": k, "ids": [i for kk, i in doomed if kk == k]}
                     for k in KINDS if any(kk == k for kk, _ in doomed)]
                    + [{"op": "unpin", "token": t} for t in lapsed])

        if not apply:
            plan(self._state())
            return doomed
        self._commit(plan)
        for kind, version_id in doomed:
            self._shared.manifests.pop((kind, version_id), None)
            self._delete_prefix(f"{kind}/{version_id}/")
        self.clean_staging(retention_s)
        return list(doomed)

    def clean_staging(self, retention_s: float = UPLOAD_RETENTION_S) -> int:
        """Remove files of removed versions, and uploads no entry commits once older than
        `retention_s` (an ``abandon`` entry first: never committable); how many versions."""
        cutoff = time.time() - retention_s
        state = self._state()
        stale: dict[str, list[str]] = {}
        gone = 0
        for kind in KINDS:
            newest: dict[str, float] = {}
            for info in self.backend.list(f"{kind}/"):
                first = info.key[len(kind) + 1:].split("/", 1)[0]
                if is_version_id(first) and not state.has(kind, first):
                    newest[first] = max(newest.get(first, 0.0), info.modified)
            for folder in self._empty_folders(kind, state, newest):
                newest[folder.name] = folder.stat().st_mtime
            for version_id, modified in sorted(newest.items()):
                if state.dead(kind, version_id):
                    self._delete_prefix(f"{kind}/{version_id}/")
                    gone += 1
                elif modified <= cutoff:
                    stale.setdefault(kind, []).append(version_id)

        def plan(state: State) -> list[dict]:
            return [{"op": "abandon", "kind": k, "ids": [i for i in ids if not state.has(k, i)]}
                    for k, ids in stale.items() if any(not state.has(k, i) for i in ids)]

        if stale:
            after = self._commit(plan)
            for kind, ids in stale.items():
                for version_id in ids:
                    if after.dead(kind, version_id):
                        self._delete_prefix(f"{kind}/{version_id}/")
                        gone += 1
        gone += self.backend.remove_temp_files(retention_s)
        return gone

    def _empty_folders(self, kind: str, state: State, listed: Mapping[str, float]
                       ) -> list[Path]:
        """A directory store's version folders with no file in them (no key names them)."""
        if not self.local or not (self.local / kind).is_dir():
            return []
        return [entry for entry in (self.local / kind).iterdir()
                if is_version_id(entry.name) and entry.name not in listed
                and not state.has(kind, entry.name) and entry.is_dir()]

    # -- the inbox, feeds and work directories -----------------------------------------

    @property
    def inbox(self) -> Inbox:
        """Where headline CSVs (keys ``inbox/*.csv``) wait for the ingest flow (storage.inbox)."""
        return Inbox(self.backend, lambda: self.cache)

    @property
    def feeds(self) -> FeedState:
        """The live feeds' state: validators per URL and the item buffer (storage.feeds)."""
        return FeedState(self)


def _check_alias_list(aliases: Sequence[str]) -> list[str]:
    """`aliases` as a list of valid, distinct names; StorageError naming a bad one."""
    if isinstance(aliases, str) or not isinstance(aliases, Sequence):
        raise StorageError(f"aliases must be a list of names, got {aliases!r}")
    return list(dict.fromkeys(check_alias_name(name) for name in aliases))
