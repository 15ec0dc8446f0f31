"""The host-local cache of an object store: files keyed by sha256, versions made of links.

``$CHARLM_CACHE`` (default ``$XDG_CACHE_HOME/charlm`` or ``~/.cache/charlm``) holds::

    .lock                               the cache-wide lock (see "Sharing")
    blobs/<sha256[:2]>/<sha256>         one file's content, read-only
    versions/<store key>/<kind>/<id>/   hard links to a version's blobs, and its manifest
                                        (written last); its mtime is when it was last used
    staging/                            private directories: versions being published or
                                        built, files being fetched, versions being deleted
    work/<store key>/<name>/            local copies of the store's work directories

Every entry appears by an atomic rename, so processes never see half a file, and a file is
downloaded once per host. With ``verify=True`` (``Store.path``'s default) only files matching
the manifest's sha256 are returned: a cached blob is hashed before it joins a new version, and
a cached version that no longer matches is dropped and built again once; only bytes wrong as
downloaded raise (a ValueError naming the file). A flock on ``.lock`` is held shared for the
short steps that find and link an entry (never during a download), exclusive by `trim`, which
skips its turn when busy, drops only blobs with one link and spares versions used within
TRIM_GRACE_S; so processes sharing the cache never fail because of trimming. A download trims
first when the disk is short of its size plus FREE_MARGIN, and evicts and retries once on a
full disk. docs/object-store.md ("The cache") has the user's view.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from storage.errors import StorageError, cause
from storage.fsutil import DISK_FULL, sha256_file
from storage.layout import MANIFEST

__all__ = ["CACHE_BYTES_VAR", "CACHE_VAR", "TRIM_GRACE_S", "FileCache"]

CACHE_VAR = "CHARLM_CACHE"
CACHE_BYTES_VAR = "CHARLM_CACHE_BYTES"
CACHE_LOCK = ".lock"  # the cache-wide flock: shared while linking, exclusive to trim
DEFAULT_BYTES = 20 << 30  # room for a few datasets and dozens of models
LEFTOVER_S = 86400.0  # a download or publish in progress never takes a day
# A caller of path() opens the files after building a model or reading a dataset's first
# shard, minutes on a slow host. The price: a cache above its bound meanwhile.
TRIM_GRACE_S = 600.0
# Free space wanted beyond the file being downloaded, for the version's directories and
# manifest and for the other writers on the same disk.
FREE_MARGIN = 64 << 20
EVICT_WAIT_S = 30.0  # others hold the lock for milliseconds: a full disk waits this long

Fetch = Callable[[str, Path], None]  # (file name in the version, new file to write) -> None


def _link(source: Path, target: Path) -> None:
    """`target` becomes a hard link to `source` (a copy where links are not possible)."""
    try:
        os.link(source, target)
    except OSError as error:
        if error.errno == errno.ENOENT or error.errno in DISK_FULL:
            raise
        shutil.copyfile(source, target)  # no hard links on this filesystem


def _unlink_if_same(path: Path, seen: os.stat_result) -> None:
    """Remove `path` if it is still the file `seen`, not one another process put there."""
    with suppress(FileNotFoundError):
        if os.path.samestat(path.stat(), seen):
            path.unlink()


def _matches(path: Path, size: int, sha256: str) -> bool:
    """Whether the cached file `path` is there, with that size and sha256."""
    try:
        return path.is_file() and path.stat().st_size == size and sha256_file(path) == sha256
    except FileNotFoundError:
        return False


def _disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or one it was raised from or while handling, is ENOSPC or EDQUOT:
    the backend raises a StorageError ``from None``, which keeps the OSError as context."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class FileCache:
    """The cache at `root`, bounded to `max_bytes` (module docstring); a used version is
    safe from trim for `trim_grace_s` (default TRIM_GRACE_S)."""

    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_BYTES, *,
                 trim_grace_s: float | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.trim_grace_s = trim_grace_s

    @classmethod
    def default(cls) -> FileCache:
        base = os.environ.get(CACHE_VAR, "").strip()
        if not base:
            xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
            base = str(Path(xdg or Path.home() / ".cache") / "charlm")
        limit = os.environ.get(CACHE_BYTES_VAR, "").strip()
        return cls(Path(base).expanduser(), int(limit) if limit.isdigit() else DEFAULT_BYTES)

    # -- the cache-wide lock -----------------------------------------------------------

    @contextmanager
    def _lock(self, exclusive: bool = False, wait_s: float = 0.0) -> Iterator[bool]:
        """Hold the cache lock; whether it was got. Shared: waits while a trim runs. Exclusive:
        waits `wait_s` at most. One open file per holder: threads exclude each other too."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / CACHE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not exclusive:
                fcntl.flock(fd, fcntl.LOCK_SH)
            got, deadline = not exclusive, time.monotonic() + wait_s
            while not got:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    got = True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.01)
            yield got
        finally:
            os.close(fd)  # releases the lock

    # -- places ------------------------------------------------------------------------

    def _private(self) -> Path:
        """A new private directory in staging/ (on the filesystem of the final places);
        those a killed process left behind are removed once a day old."""
        parent = self.root / "staging"
        parent.mkdir(parents=True, exist_ok=True)
        for old in parent.glob(".*"):
            with suppress(FileNotFoundError):
                if time.time() - old.stat().st_mtime > LEFTOVER_S:
                    shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=parent, prefix=f".{os.getpid()}-"))

    def staging_dir(self) -> Path:
        """An empty directory of this process's own, for a version before it is published or
        (as `download_dir`) for downloaded files, an inbox CSV, which the caller removes."""
        return self._private()

    download_dir = staging_dir

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def version_dir(self, store_key: str, kind: str, version_id: str) -> Path:
        return self.root / "versions" / store_key / kind / version_id

    def work_dir(self, store_key: str, name: str) -> Path:
        return self.root / "work" / store_key / name

    # -- blobs -------------------------------------------------------------------------

    def adopt(self, source: Path, sha256: str) -> Path:
        """Make the (read-only, hashed) file `source` the blob of `sha256`, by a hard link: a
        publisher never downloads what it just uploaded."""
        target = self.blob(sha256)
        with self._lock():
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                temp = target.with_name(f".{target.name}.{os.getpid()}.{id(source)}.tmp")
                _link(source, temp)
                os.replace(temp, target)
        return target

    def fetch(self, sha256: str, size: int, download: Callable[[Path], None], what: str, *,
              verify: bool = False, link_to: Path | None = None, keep: Path | None = None) -> Path:
        """The blob of `sha256`, downloaded by `download(new file)` if this host lacks it, and
        checked (a ValueError naming `what` when the downloaded bytes are wrong; a StorageError
        when the disk is full even after evicting). A cached blob is trusted on its size, or
        with `verify` hashed first (a bad one is downloaded again). `link_to`: a new path in a
        private directory that gets the blob (a hard link) before trim may run, else the blob
        may go as soon as this returns; `keep`: the version being built, spared by eviction."""
        target = self.blob(sha256)
        found = self._find(target, size, link_to)
        # Without link_to, the blob may be gone (trimmed meanwhile): no match either.
        if found is not None and verify and not _matches(link_to or target, size, sha256):
            # Bit rot or an in-place write: never serve it, nor let it be linked again.
            _unlink_if_same(target, found)
            if link_to is not None:
                link_to.unlink(missing_ok=True)
            found = None
        if found is None:
            self._download(sha256, size, download, what, link_to, keep)
        return target

    def _find(self, target: Path, size: int, link_to: Path | None) -> os.stat_result | None:
        """The cached blob's stat if it has the right size (linked to `link_to`), else None."""
        with self._lock():  # trim cannot drop it between the look and the link
            try:
                info = target.stat()
                if info.st_size != size:
                    return None
                if link_to is not None:
                    _link(target, link_to)
            except FileNotFoundError:
                return None
            return info

    def _download(self, sha256: str, size: int, download: Callable[[Path], None],
                  what: str, link_to: Path | None, keep: Path | None) -> None:
        need = size + FREE_MARGIN
        if self._free() < need:
            self.trim(keep, free_bytes=need)
        for evicted in (False, True):
            try:
                return self._download_once(sha256, size, download, what, link_to)
            except (OSError, StorageError) as error:
                if not _disk_full(error):
                    raise
                if evicted:
                    raise StorageError(f"disk full: no room for {what} ({size} bytes) in the cache "
                                       f"folder {self.root}, even after evicting older versions "
                                       f"({cause(error)})") from None
            if link_to is not None:
                link_to.unlink(missing_ok=True)  # a partial copy, if that is what failed
            self._evict_for(need, keep)

    def _download_once(self, sha256: str, size: int, download: Callable[[Path], None],
                       what: str, link_to: Path | None) -> None:
        temp_dir = self._private()
        try:
            temp = temp_dir / "blob"
            download(temp)
            got = sha256_file(temp)
            if got != sha256 or temp.stat().st_size != size:
                raise ValueError(f"{what}: downloaded bytes do not match the manifest "
                                 f"(sha256 {got[:12]}..., expected {sha256[:12]}...)")
            os.chmod(temp, 0o444)
            if link_to is not None:
                _link(temp, link_to)  # before it becomes the blob: trim can never take it
            target = self.blob(sha256)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)  # also replaces a corrupt or wrong-sized one
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)

    def _free(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free

    # -- versions ----------------------------------------------------------------------

    def materialise(self, store_key: str, kind: str, version_id: str, manifest: dict,
                    manifest_bytes: bytes, fetch: Fetch, verify: bool = True) -> Path:
        """The version as a local directory, each file fetched at most once per host, matching
        the manifest's sha256 with `verify` (module docstring: "Integrity")."""
        final = self.version_dir(store_key, kind, version_id)
        if self._mark_used(final):
            bad = [rel for rel, entry in manifest["files"].items()
                   if verify and not _matches(final / rel, entry["size"], entry["sha256"])]
            if not bad:
                return final
            self._drop_corrupt(final, manifest, bad)
        self._build(final, kind, version_id, manifest, manifest_bytes, fetch, verify)
        self.trim(keep=final)
        return final

    def _mark_used(self, final: Path) -> bool:
        """Whether the version is cached; if so, marked used now (trim keeps it a while)."""
        with self._lock():  # so that trim cannot drop it between the look and the mark
            try:
                os.utime(final)
            except FileNotFoundError:
                return False
            return (final / MANIFEST).exists()

    def _build(self, final: Path, kind: str, version_id: str, manifest: dict,
               manifest_bytes: bytes, fetch: Fetch, verify: bool) -> None:
        temp = self._private()
        try:
            for rel, entry in manifest["files"].items():
                (temp / rel).parent.mkdir(parents=True, exist_ok=True)
                self.fetch(entry["sha256"], entry["size"], lambda path, rel=rel: fetch(rel, path),
                           f"{kind} version {version_id}: {rel}", verify=verify,
                           link_to=temp / rel, keep=final)
            (temp / MANIFEST).write_bytes(manifest_bytes)
            os.chmod(temp / MANIFEST, 0o444)
            with self._lock():  # it appears, and is marked used, in one step for trim
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(temp, final)
                except OSError:
                    if not (final / MANIFEST).exists():  # not another process's complete copy
                        raise
                os.utime(final)
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _drop_corrupt(self, final: Path, manifest: dict, bad: list[str]) -> None:
        """Remove the cached version `final` and those blobs of its `bad` files that are bad
        too (a hard link to a corrupt file is the corrupt file), so that it is built again."""
        for rel in bad:
            sha256 = manifest["files"][rel]["sha256"]
            blob = self.blob(sha256)
            with suppress(FileNotFoundError):
                info = blob.stat()
                linked = (final / rel).exists() and os.path.samefile(blob, final / rel)
                if linked or sha256_file(blob) != sha256:
                    _unlink_if_same(blob, info)
        self._discard(final)

    def _discard(self, directory: Path) -> None:
        """Delete a directory atomically for readers: renamed into a private one, then removed."""
        trash = self._private()
        try:
            with suppress(FileNotFoundError):  # another process removed it first
                os.rename(directory, trash / "gone")
        finally:
            shutil.rmtree(trash, ignore_errors=True)  # read-only files in writable dirs

    # -- size and trimming -------------------------------------------------------------

    def _entries(self, pattern: str) -> list[tuple[Path, os.stat_result]]:
        """(path, lstat) of the entries matching `pattern` that are still there, but none
        named '.*' (glob skips them): temporaries, never blobs or versions."""
        found = []
        for name in glob.glob(pattern, root_dir=self.root):
            with suppress(FileNotFoundError):
                found.append((self.root / name, os.lstat(self.root / name)))
        return found

    def size(self) -> int:
        return sum(info.st_size for _, info in self._entries("blobs/*/*"))

    def trim(self, keep: Path | None = None, *, free_bytes: int = 0) -> None:
        """Drop unlinked blobs and least recently used versions until under max_bytes (and
        the disk has `free_bytes` free), sparing `keep` and the grace period. Skipped while
        another process holds the cache lock: the next version built trims."""
        def enough(left: int) -> bool:
            return left <= self.max_bytes and (not free_bytes or self._free() >= free_bytes)

        if enough(self.size()):
            return
        grace = TRIM_GRACE_S if self.trim_grace_s is None else self.trim_grace_s
        with self._lock(exclusive=True) as got:
            if got:
                self._evict(keep, enough, grace)

    def _evict_for(self, need: int, keep: Path | None) -> None:
        """After a download failed for a full disk: free `need` bytes of blobs (counted in
        the cache: EDQUOT does not show in the disk's free space), in the grace period too
        (without room the download fails for certain), never `keep`."""
        with self._lock(exclusive=True, wait_s=EVICT_WAIT_S) as got:
            if not got:
                return  # the retry may still find room another process's trim made
            start = self.size()
            self._evict(keep, lambda left: start - left >= need, None)

    def _evict(self, keep: Path | None, enough: Callable[[int], bool],
               grace_s: float | None) -> None:
        """Under the exclusive lock: drop unlinked blobs, then versions least recently used
        first (not `keep`, nor those used within `grace_s`), until `enough(bytes left)`."""
        if enough(self._drop_unlinked_blobs()):
            return
        now = time.time()
        versions = self._entries("versions/*/*/*")
        for used, version in sorted((info.st_mtime, path) for path, info in versions):
            if version == keep:
                continue
            if grace_s is not None and now - used < grace_s:
                break  # the rest were used later still
            try:
                self._discard(version)
            except OSError:
                continue  # cannot be renamed (permissions): leave it
            if enough(self._drop_unlinked_blobs()):
                return

    def _drop_unlinked_blobs(self) -> int:
        """Remove blobs no cached version links to; the bytes left."""
        left = 0
        for path, info in self._entries("blobs/*/*"):
            if info.st_nlink <= 1:
                path.unlink(missing_ok=True)
            else:
                left += info.st_size
        return left


def store_key(url: str) -> str:
    """A short file-name-safe key per store URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]
