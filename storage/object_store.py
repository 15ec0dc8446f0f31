"""The artifact store on an object store (S3, GCS, Azure, memory): no locks, one commit point.

`ObjectStore` has the public API of the local `storage.Store` (``Store("s3://...")`` returns
one) and the same layout, as keys under the URL's prefix (see storage/__init__.py)::

    <kind>/<id>/<file>            a version's files, uploaded first
    <kind>/<id>/manifest.json     written create-only (If-None-Match: *): the commit point
    <kind>/.aliases/<name>        one version id; changed by compare-and-swap on its ETag
    <kind>/.alias-history.jsonl   one JSON line per set_alias, appended by compare-and-swap
    .work/<name>.tar              the latest saved copy of a work directory
    feeds/...                     the feed buffer (storage.feeds)

A version without its manifest is invisible (listing, resolve, gc and verify only count
manifests), so a publisher killed at any moment leaves nothing half-visible; its uploads
are reported by `verify` and removed by `gc`/`clean_staging` once older than
storage.staging.STALE_AFTER_S (an upload in progress elsewhere is younger). Readers get
versions as local directories from the host's cache (storage.cache): each file is
downloaded once per host and checked against the manifest's sha256.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storage import staging as staging_cleanup
from storage.aliases import UNCHECKED, Unchecked, history_line, parse_history
from storage.backend import Backend, ObjectMissing, WriteConflict, open_backend
from storage.cache import FileCache, store_key
from storage.errors import AliasMovedError, CorruptVersionError, StorageError
from storage.gc import Version, plan_gc
from storage.ids import KINDS, check_alias_name, check_kind, is_version_id, new_version_id
from storage.layout import ALIAS_HISTORY_FILE, ALIASES_DIR, MANIFEST
from storage.manifests import build_manifest, parse_manifest, to_json
from storage.references import VersionLookup
from storage.verify import Problem
from storage.workdirs import MirroredWorkDirs

__all__ = ["ObjectStore"]

UPLOADS = 8  # files of one version uploaded at once
CAS_ATTEMPTS = 50  # compare-and-swap retries before giving up (contention, not errors)


def _pause(attempt: int) -> None:
    # Jittered so that writers that collided do not collide again in lockstep.
    time.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** attempt)))


class ObjectStore(VersionLookup, MirroredWorkDirs):
    """Versions, aliases and work directories on the object store at `url`."""

    def __init__(self, url: str, backend: Backend | None = None,
                 cache: FileCache | None = None) -> None:
        self.root = url  # what messages and events name the store by
        self.backend = backend or open_backend(url)
        self.cache = cache or FileCache.default()
        self._key = store_key(url)
        self._manifests: dict[Version, tuple[dict, bytes]] = {}  # immutable once committed

    def __repr__(self) -> str:
        return f"ObjectStore({self.root!r})"

    # -- publishing --------------------------------------------------------------------

    @contextmanager
    def publish(self, kind: str, *, parents: Mapping[str, Sequence[str]] | None = None,
                params: Mapping[str, Any] | None = None, seed: int | None = None,
                aliases: Sequence[str] = ("latest",),
                expect: Mapping[str, str | None] | None = None) -> Iterator[Any]:
        """As `storage.Store.publish`: the caller writes into a local staging directory;
        on exit its files are uploaded, then the manifest is written create-only."""
        from storage.store import Staging  # the one Staging type (store imports us lazily)

        alias_names, parent_ids, params = self._check_publish(kind, aliases, expect, parents,
                                                              params, seed)
        version_id = new_version_id()
        path = self.cache.staging_dir()
        try:
            staging = Staging(path=path, summary={}, id=version_id, kind=kind)
            yield staging
            manifest = build_manifest(kind, version_id, path, parent_ids, params, seed,
                                      staging.summary)
            data = to_json(manifest, f"summary of the new {kind} version")
            # In parallel: latency, not bandwidth, bounds many small files (obstore releases
            # the GIL while it waits). Then the last checks before the commit (parents still
            # there, expected aliases unmoved), together: one round trip.
            with ThreadPoolExecutor(UPLOADS) as pool:
                list(pool.map(lambda rel: self.backend.put(f"{kind}/{version_id}/{rel}",
                                                           path / rel), manifest["files"]))
                checks = pool.submit(self._check_parents_exist, kind, parent_ids)
                seen = {name: pool.submit(self._alias_and_tag, kind, name)
                        for name in alias_names if name not in (expect or {})}
                tags = self._expected_tags(kind, expect or {})
                checks.result()
            for rel, entry in manifest["files"].items():
                self.cache.adopt(path / rel, entry["sha256"])
            self.backend.put(self._manifest_key(kind, version_id), data, "create")
            self._manifests[(kind, version_id)] = (manifest, data)
            for name in alias_names:
                if name in tags:
                    self._swap_expected(kind, name, version_id, tags[name], expect or {})
                else:
                    self._swap_alias(kind, name, version_id, seen=seen[name].result())
            # Last: a version taken back (_swap_expected) must not stay readable here.
            self._keep_local_copy(path, kind, version_id, data)
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _expected_tags(self, kind: str, expect: Mapping[str, str | None]) -> dict[str, str]:
        """Check `expect` (AliasMovedError) and keep each alias's ETag for the swap."""
        tags = {}
        for name, expected in expect.items():
            current, tag = self._alias_and_tag(kind, name)
            if current != expected:
                self._check_expected(kind, {name: expected})  # raises the usual message
            tags[name] = tag or "create"
        return tags

    def _swap_expected(self, kind: str, name: str, version_id: str, tag: str,
                       expect: Mapping[str, str | None]) -> None:
        try:
            self.backend.put(self._alias_key(kind, name), f"{version_id}\n".encode(), tag)
        except WriteConflict:
            # Another writer moved the alias between the check and the commit: take the
            # version back (delete its manifest) so that nobody builds on it.
            self.backend.delete(self._manifest_key(kind, version_id))
            self._manifests.pop((kind, version_id), None)
            self._check_expected(kind, expect)
            raise AliasMovedError(f"cannot publish {kind}: alias {name!r} moved while this "
                                  "version was committed") from None

    def _keep_local_copy(self, path: Path, kind: str, version_id: str, data: bytes) -> None:
        """The publisher's files become the cached copy of the version (no download)."""
        (path / MANIFEST).write_bytes(data)
        final = self.cache.version_dir(self._key, kind, version_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, final)
        except OSError:
            pass  # another process materialised it first; ours is removed with staging

    # -- reading -----------------------------------------------------------------------

    def _manifest_key(self, kind: str, version_id: str) -> str:
        return f"{kind}/{version_id}/{MANIFEST}"

    def _ids(self, kind: str) -> list[str]:
        return sorted(self._listing(kind)[0])

    def _listing(self, kind: str) -> tuple[set[str], dict[str, list[Any]], list[str]]:
        """(committed ids, objects per id prefix, other entries) of one kind."""
        committed: set[str] = set()
        objects: dict[str, list[Any]] = {}
        other = []
        for info in self.backend.list(f"{kind}/"):
            first, _, rest = info.key[len(kind) + 1:].partition("/")
            if first.startswith("."):
                continue  # aliases, history: the store's bookkeeping
            if not is_version_id(first) or not rest:
                other.append(first)
                continue
            objects.setdefault(first, []).append(info)
            if rest == MANIFEST:
                committed.add(first)
        return committed, objects, other

    def _has_version(self, kind: str, version_id: str) -> bool:
        # A manifest this host already holds is immutable: reading its version needs no
        # request (warm loads cost one alias read). Writes ask the store (_has_version_now).
        if (kind, version_id) in self._manifests or \
                (self.cache.version_dir(self._key, kind, version_id) / MANIFEST).exists():
            return True
        return self._has_version_now(kind, version_id)

    def _has_version_now(self, kind: str, version_id: str) -> bool:
        return self.backend.head(self._manifest_key(kind, version_id)) is not None

    def _read_manifest(self, kind: str, version_id: str) -> dict:
        return self._manifest_with_bytes(kind, version_id)[0]

    def _manifest_with_bytes(self, kind: str, version_id: str) -> tuple[dict, bytes]:
        if (kind, version_id) in self._manifests:
            return self._manifests[(kind, version_id)]
        cached = self.cache.version_dir(self._key, kind, version_id) / MANIFEST
        try:
            data = cached.read_bytes()  # written only after the version's files
        except FileNotFoundError:
            try:
                data = self.backend.get(self._manifest_key(kind, version_id))[0]
            except ObjectMissing:
                raise CorruptVersionError(kind, version_id, MANIFEST, "missing") from None
        manifest = parse_manifest(data, kind, version_id)
        self._manifests[(kind, version_id)] = (manifest, data)
        return manifest, data

    def path(self, kind: str, ref: str, *, verify: bool = True) -> Path:
        """A local directory holding version `ref` (from the host's cache; downloaded and
        checked against the manifest's sha256 on first use)."""
        version_id = self.resolve(kind, ref)
        manifest, data = self._manifest_with_bytes(kind, version_id)

        def fetch(rel: str, target: Path) -> None:
            self.backend.get_file(f"{kind}/{version_id}/{rel}", target)

        try:
            return self.cache.materialise(self._key, kind, version_id, manifest, data, fetch,
                                          verify)
        except ValueError as error:
            if isinstance(error, StorageError):
                raise
            raise CorruptVersionError(kind, version_id, "", str(error)) from None

    def manifest(self, kind: str, ref: str) -> dict:
        return self._read_manifest(kind, self.resolve(kind, ref))

    def versions(self, kind: str) -> list[dict]:
        check_kind(kind)
        return [self._read_manifest(kind, version_id) for version_id in self._ids(kind)]

    # -- aliases -----------------------------------------------------------------------

    def _alias_key(self, kind: str, name: str) -> str:
        return f"{kind}/{ALIASES_DIR}/{name}"

    def _alias_and_tag(self, kind: str, name: str) -> tuple[str | None, str | None]:
        try:
            data, tag = self.backend.get(self._alias_key(kind, name))
        except ObjectMissing:
            return None, None
        text = data.decode("utf-8", "replace").strip()
        if not is_version_id(text):
            raise StorageError(f"{kind} alias {name!r} in store {self.root} does not contain "
                               f"a version id: {text[:80]!r}")
        return text, tag

    def _read_alias(self, kind: str, name: str) -> str | None:
        return self._alias_and_tag(kind, name)[0]

    def aliases(self, kind: str) -> dict[str, str]:
        check_kind(kind)
        result = {}
        for info in self.backend.list(f"{kind}/{ALIASES_DIR}/"):
            name = info.key.rsplit("/", 1)[1]
            try:
                target = self._read_alias(kind, name)
            except StorageError:
                continue  # verify() reports unreadable aliases
            if target is not None:
                result[name] = target
        return dict(sorted(result.items()))

    def _swap_alias(self, kind: str, name: str, version_id: str, expect: Any = UNCHECKED,
                    seen: tuple[str | None, str | None] | None = None) -> str | None:
        """Point `name` at `version_id` by compare-and-swap; the id it held before. `seen`:
        (id, ETag) read already, for the first attempt (saves a round trip)."""
        for attempt in range(CAS_ATTEMPTS):
            previous, tag = seen if seen and not attempt else self._alias_and_tag(kind, name)
            if expect is not UNCHECKED and previous != expect:
                self._check_expected(kind, {name: expect}, f"set {kind} alias {name!r}")
            try:
                self.backend.put(self._alias_key(kind, name), f"{version_id}\n".encode(),
                                 tag or "create")
                return previous
            except WriteConflict:
                _pause(attempt)
        raise StorageError(f"store {self.root}: {kind} alias {name!r} kept changing; gave up "
                           f"after {CAS_ATTEMPTS} attempts")

    def set_alias(self, kind: str, name: str, version_id: str, reason: str = "", *,
                  expect: str | None | Unchecked = UNCHECKED) -> None:
        """Point alias `name` at an existing version and record it in the alias history.
        With `expect` (a version id, or None: the alias must not exist) the alias moves only
        if it still holds that, else AliasMovedError (compare-and-swap on its ETag)."""
        check_kind(kind)
        check_alias_name(name)
        if not isinstance(version_id, str) or not is_version_id(version_id):
            raise StorageError(
                f"cannot set {kind} alias {name!r}: {version_id!r} is not a version id")
        # A version this process published or read counts as there (the check and the swap
        # are two requests, never atomic; gc keeps aliased and new versions anyway).
        if (kind, version_id) not in self._manifests and \
                not self._has_version_now(kind, version_id):
            raise StorageError(self._not_found(kind, version_id))
        history = f"{kind}/{ALIAS_HISTORY_FILE}"
        with ThreadPoolExecutor(2) as pool:  # both reads in one round trip
            seen_history = pool.submit(self._get_or_empty, history)
            seen_alias = self._alias_and_tag(kind, name)
            previous = self._swap_alias(kind, name, version_id, expect, seen_alias)
            self._append(history, history_line(name, version_id, previous, reason),
                         seen_history.result())

    def _get_or_empty(self, key: str) -> tuple[bytes, str | None]:
        try:
            return self.backend.get(key)
        except ObjectMissing:
            return b"", None

    def _append(self, key: str, line: bytes,
                seen: tuple[bytes, str | None] | None = None) -> None:
        """Append `line` to the object `key` by compare-and-swap (`seen`: its content and
        ETag read already, for the first attempt)."""
        for attempt in range(CAS_ATTEMPTS):
            data, tag = seen if seen and not attempt else self._get_or_empty(key)
            try:
                self.backend.put(key, data + line, tag or "create")
                return
            except WriteConflict:
                _pause(attempt)
        raise StorageError(f"store {self.root}: {key} kept changing; gave up after "
                           f"{CAS_ATTEMPTS} attempts")

    def alias_history(self, kind: str, name: str | None = None) -> list[dict]:
        check_kind(kind)
        try:
            return parse_history(self.backend.get(f"{kind}/{ALIAS_HISTORY_FILE}")[0], name)
        except ObjectMissing:
            return []

    # -- integrity and clean-up --------------------------------------------------------

    def verify(self, kind: str | None = None, *, quick: bool = False) -> list[Problem]:
        """Every committed version's files against its manifest (presence, size; sha256 is
        checked whenever a file is downloaded; ``quick``: manifests, parents and aliases
        only), and uploads with no manifest older than storage.staging.STALE_AFTER_S
        (younger ones may be a publish in progress elsewhere)."""
        from storage.object_maintenance import verify_kind

        kinds = KINDS if kind is None else (check_kind(kind),)
        problems = [p for k in kinds for p in verify_kind(self, k, check_files=not quick)]
        return problems + (self.feeds.problems() if kind is None else [])

    def abandoned_uploads(self, kind: str, min_age_s: float | None = None) -> list[str]:
        """Ids of `kind` with uploaded files but no manifest, untouched for `min_age_s`
        (default: storage.staging.STALE_AFTER_S)."""
        from storage.object_maintenance import abandoned_uploads

        # No pid can tell whether an upload is a publish in progress on another machine;
        # its age can (storage.staging.STALE_AFTER_S, read now: tests lower it).
        age = staging_cleanup.STALE_AFTER_S if min_age_s is None else min_age_s
        return abandoned_uploads(self, kind, age)

    def clean_staging(self) -> int:
        """Delete abandoned uploads (see `abandoned_uploads`); how many versions' worth."""
        from storage.object_maintenance import delete_version

        return sum(delete_version(self, kind, version_id) for kind in KINDS
                   for version_id in self.abandoned_uploads(kind))

    def gc(self, keep: int = 5, apply: bool = False) -> list[Version]:
        """As `storage.Store.gc`: a version is removed manifest first (invisible at once),
        then its files; abandoned uploads go too."""
        from storage.object_maintenance import delete_version

        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise StorageError(f"keep must be a non-negative int, got {keep!r}")
        aliased = [(kind, target) for kind in KINDS for target in self.aliases(kind).values()]
        doomed = plan_gc({kind: self._ids(kind) for kind in KINDS}, aliased, keep,
                         self._read_manifest)
        if apply:
            for kind, version_id in doomed:
                delete_version(self, kind, version_id)
            self.clean_staging()
        return doomed

    def exists(self) -> bool:
        """Whether anything is stored yet (an empty or missing bucket prefix: no)."""
        return any(self.backend.list(f"{kind}/") for kind in KINDS)

    # -- the inbox and feeds (work directories: storage.workdirs.MirroredWorkDirs) -------

    @property
    def inbox(self) -> Path:
        """A folder on this host (in the cache) where CSVs wait for the ingest flow: the
        inbox is where files arrive, so it is the ingesting machine's, not the store's."""
        return self.cache.root / "inbox" / self._key

    @property
    def feeds(self) -> Any:
        """The live feeds' state (storage.feeds), kept in the object store."""
        from storage.feeds import FeedState

        return FeedState(self)
