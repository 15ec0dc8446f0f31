"""The host-local cache of an object store: files keyed by sha256, versions made of links.

``$CHARLM_CACHE`` (default ``$XDG_CACHE_HOME/charlm`` or ``~/.cache/charlm``) holds::

    blobs/<sha256[:2]>/<sha256>            one file's content, read-only, verified when fetched
    versions/<store key>/<kind>/<id>/      a version as a directory: hard links to its blobs
                                           and its manifest.json (written last)
    staging/                               versions being published, files being fetched
    work/<store key>/<name>/               local copies of the store's work directories

Every entry appears by an atomic rename of a private temporary, so processes sharing the
cache never see half a file, and a file is downloaded once per host whatever the number of
versions or processes that use it. The cache is bounded by ``$CHARLM_CACHE_BYTES`` (default
20 GiB): `trim` drops the versions (and then the blobs) used least recently. A process still
reading a trimmed version keeps its open files; the next `materialise` fetches it again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from storage.errors import CorruptVersionError
from storage.fsutil import sha256_file
from storage.layout import MANIFEST

__all__ = ["CACHE_BYTES_VAR", "CACHE_VAR", "FileCache"]

CACHE_VAR = "CHARLM_CACHE"
CACHE_BYTES_VAR = "CHARLM_CACHE_BYTES"
DEFAULT_BYTES = 20 << 30  # room for a few datasets and dozens of models
LEFTOVER_S = 86400.0  # a download or publish in progress never takes a day

Fetch = Callable[[str, Path], None]  # (file name in the version, new file to write) -> None


class FileCache:
    """The cache at `root`, bounded to `max_bytes` (see the module docstring)."""

    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    @classmethod
    def default(cls) -> FileCache:
        base = os.environ.get(CACHE_VAR, "").strip()
        if not base:
            xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
            base = str(Path(xdg or Path.home() / ".cache") / "charlm")
        limit = os.environ.get(CACHE_BYTES_VAR, "").strip()
        return cls(Path(base).expanduser(), int(limit) if limit.isdigit() else DEFAULT_BYTES)

    def _private(self, area: str) -> Path:
        """A new private directory under `area` (same filesystem as the final places);
        those a killed process left behind are removed once a day old."""
        parent = self.root / area
        parent.mkdir(parents=True, exist_ok=True)
        for old in parent.glob(".*"):
            try:
                if time.time() - old.stat().st_mtime > LEFTOVER_S:
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:
                pass
        return Path(tempfile.mkdtemp(dir=parent, prefix=f".{os.getpid()}-"))

    def staging_dir(self) -> Path:
        """An empty directory to write a version into before it is published."""
        return self._private("staging")

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def version_dir(self, store_key: str, kind: str, version_id: str) -> Path:
        return self.root / "versions" / store_key / kind / version_id

    def work_dir(self, store_key: str, name: str) -> Path:
        return self.root / "work" / store_key / name

    def adopt(self, source: Path, sha256: str) -> Path:
        """Make the (read-only, hashed) file `source` the blob of `sha256`, by a hard link: a
        publisher never downloads what it just uploaded."""
        target = self.blob(sha256)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{os.getpid()}.{id(source)}.tmp")
            try:
                os.link(source, temp)
            except OSError:
                shutil.copyfile(source, temp)
            os.replace(temp, target)
        return target

    def fetch(self, sha256: str, size: int, download: Callable[[Path], None],
              what: str) -> Path:
        """The blob of `sha256`, downloaded by `download(new file)` if this host lacks it
        and checked against `sha256` and `size` (CorruptVersionError-free: a ValueError
        naming `what` when the store's bytes are wrong)."""
        target = self.blob(sha256)
        if target.exists() and target.stat().st_size == size:
            return target
        temp_dir = self._private("staging")
        try:
            temp = temp_dir / "blob"
            download(temp)
            got = sha256_file(temp)
            if got != sha256 or temp.stat().st_size != size:
                raise ValueError(f"{what}: downloaded bytes do not match the manifest "
                                 f"(sha256 {got[:12]}..., expected {sha256[:12]}...)")
            os.chmod(temp, 0o444)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
        return target

    def materialise(self, store_key: str, kind: str, version_id: str, manifest: dict,
                    manifest_bytes: bytes, fetch: Fetch, verify: bool) -> Path:
        """The version as a local directory, each file fetched at most once per host."""
        final = self.version_dir(store_key, kind, version_id)
        if (final / MANIFEST).exists():
            if verify:
                self._check(final, kind, version_id, manifest)
            os.utime(final)  # recently used: trim keeps it
            return final
        temp = self._private("staging")
        try:
            for rel, entry in manifest["files"].items():
                (temp / rel).parent.mkdir(parents=True, exist_ok=True)
                for attempt in (1, 2):
                    blob = self.fetch(entry["sha256"], entry["size"],
                                      lambda path, rel=rel: fetch(rel, path),
                                      f"{kind} version {version_id}: {rel}")
                    try:
                        os.link(blob, temp / rel)
                        break
                    except FileNotFoundError:  # another process's trim took it: fetch again
                        if attempt == 2:
                            raise
                    except OSError:  # no hard links on this filesystem
                        shutil.copyfile(blob, temp / rel)
                        break
            (temp / MANIFEST).write_bytes(manifest_bytes)
            os.chmod(temp / MANIFEST, 0o444)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(temp, final)
            except OSError:
                if not (final / MANIFEST).exists():  # not another process's complete copy
                    raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        self.trim(keep=final)
        return final

    def _check(self, directory: Path, kind: str, version_id: str, manifest: dict) -> None:
        for rel, entry in manifest["files"].items():
            path = directory / rel
            if not path.is_file():
                raise CorruptVersionError(kind, version_id, rel, "missing from the cache")
            if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
                raise CorruptVersionError(kind, version_id, rel,
                                          f"cached copy {path} does not match the manifest")

    def size(self) -> int:
        total = 0
        for dirpath, _, filenames in os.walk(self.root / "blobs"):
            for name in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:
                    pass
        return total

    def trim(self, keep: Path | None = None) -> None:
        """Drop least recently used versions, then unlinked blobs, until under max_bytes."""
        if self.size() <= self.max_bytes:
            return
        versions = [p for p in (self.root / "versions").glob("*/*/*") if p != keep]
        for version in sorted(versions, key=lambda p: p.stat().st_mtime):
            trash = version.with_name(f".{version.name}.{os.getpid()}.trash")
            try:
                os.rename(version, trash)  # atomic for readers: whole or gone
            except OSError:
                continue
            shutil.rmtree(trash, ignore_errors=True)  # read-only files in writable dirs
            if self._drop_unlinked_blobs() <= self.max_bytes:
                return
        self._drop_unlinked_blobs()

    def _drop_unlinked_blobs(self) -> int:
        """Remove blobs no cached version links to; the bytes left."""
        left = 0
        for path in (self.root / "blobs").glob("*/*"):
            info = path.stat()
            if info.st_nlink <= 1 and not path.name.startswith("."):
                path.unlink(missing_ok=True)
            else:
                left += info.st_size
        return left


def store_key(url: str) -> str:
    """A short file-name-safe key per store URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]
