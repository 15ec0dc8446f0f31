"""The inbox: headline CSVs waiting for the ingest flow, as keys of the store (names:
storage.layout), one implementation over the byte backend for both kinds of store::

    inbox/<name>.csv                   waiting (top level only; names starting with '.' are
                                       left alone, so a writer may upload under one first)
    inbox/.claims/<name>.csv           a run's claim on it: {"by", "time", "token"}
    inbox/processed/<folder>/<name>    archived: folder = the dataset id it went into,
                                       "unchanged" or "rejected"

On a directory store these keys are the files ``<root>/inbox/...``; on an object store a CSV
put under ``inbox/`` from any machine is ingested by whichever host runs the flow.

**Exactly once**: each file is ingested and archived by the one run that claims it. `claim`
writes the claim object create-only; one last written over `CLAIM_LEASE_S` ago (its run was
killed) is taken over by a compare-and-swap on its ETag, and one on a CSV gone meanwhile is
let go. `archive` renews the claim (compare-and-swap: refused if another run took it over),
copies the CSV create-only to ``processed/<folder>/`` (as ``<stem>.1.csv``, ... when taken),
then deletes the CSV and last the claim, so a scan never sees the file waiting unclaimed.

A run killed between claim and archive blocks the file for the lease; one killed between
the copy and the deletes leaves it to be ingested again after the lease, which adds nothing
(a dataset version is the de-duplicated union) and archives it as "unchanged". Give each
file a new name: one put under the name of a file being ingested may be deleted with it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from storage import layout
from storage.backend import Backend, ObjectMissing, WriteConflict
from storage.cache import FileCache
from storage.errors import StorageError

__all__ = ["CLAIM_LEASE_S", "Claim", "Inbox", "check_csv_name"]

CLAIM_LEASE_S = 3600.0  # ingesting a file takes minutes; hosts' clocks never differ by an hour
_CLAIM_ATTEMPTS = 5  # a claim released or taken over while we looked: look again


def check_csv_name(name: object) -> str:
    """`name` if it can name an inbox file (``*.csv``, no '/', not hidden), else StorageError."""
    if (not isinstance(name, str) or not name.endswith(".csv") or name.startswith(".")
            or "/" in name or "\\" in name or "\0" in name or name.strip() != name):
        raise StorageError(f"bad inbox file name {name!r}: use NAME.csv (no '/', not "
                           "starting with '.')")
    return name


@dataclass(frozen=True)
class Claim:
    """A run's hold on one inbox file (`Inbox.claim`)."""

    name: str  # the CSV's name in the inbox
    token: str  # this claim's own random token: whoever holds the claim object with it
    by: str  # the claimant, for people: pid@host and the run's label
    source: str  # the CSV's address (a path, or the store URL and key): recorded as origin


class Inbox:
    """The inbox of the store on `backend`; `cache` gives the host cache downloads go into."""

    def __init__(self, backend: Backend, cache: Callable[[], FileCache]) -> None:
        self.backend = backend
        self._cache = cache

    def __repr__(self) -> str:
        return f"Inbox({self.where!r})"

    @property
    def directory(self) -> Path | None:
        """A directory store's inbox folder (``<root>/inbox``); None for an object store."""
        local = self.backend.local_root
        return local / layout.INBOX_DIR if local else None

    @property
    def where(self) -> str:
        """The inbox's address, for messages: a folder, or the store URL's ``inbox/``."""
        return self._address(f"{layout.INBOX_DIR}/")

    def address(self, name: str) -> str:
        """Where inbox file `name` is: its path on a directory store, else its URL."""
        return self._address(layout.inbox_key(check_csv_name(name)))

    def _address(self, key: str) -> str:
        local = self.backend.local_root
        return str(local / key) if local else f"{self.backend.url}/{key}"

    def put(self, name: str, data: bytes | Path) -> str:
        """Drop a CSV into the inbox (written whole, replacing one of that name); its address."""
        self.backend.put(layout.inbox_key(check_csv_name(name)), data)
        return self.address(name)

    def waiting(self) -> list[str]:
        """The names of the CSVs waiting, oldest first (claimed ones included)."""
        prefix = f"{layout.INBOX_DIR}/"
        found = sorted((i.modified, i.key[len(prefix):]) for i in self.backend.list(prefix))
        return [name for _, name in found
                if "/" not in name and name.endswith(".csv") and not name.startswith(".")]

    def archived(self, folder: str | None = None) -> list[str]:
        """The keys under ``inbox/processed/`` (under `folder` of it, when given)."""
        return [info.key for info in self.backend.list(layout.inbox_archive_prefix(folder))]

    def claim(self, name: str, label: str = "", lease_s: float = CLAIM_LEASE_S) -> Claim | None:
        """This run's claim on waiting file `name`, or None when another run holds it (or it
        is no longer waiting). A claim older than `lease_s` seconds is taken over."""
        key = layout.inbox_claim_key(check_csv_name(name))
        claim = Claim(name, secrets.token_hex(8),
                      f"{os.getpid()}@{os.uname().nodename}" + (f" {label}" if label else ""),
                      self.address(name))
        body = _claim_body(claim)
        for _ in range(_CLAIM_ATTEMPTS):
            with suppress(WriteConflict):
                self.backend.put(key, body, "create")
                break
            info = self.backend.head(key)
            if info is None:
                continue  # released meanwhile: try again
            if time.time() - info.modified < lease_s:
                return None  # another run holds it
            with suppress(WriteConflict, ObjectMissing):
                # Stale: its holder was killed. Of several takers the first swap wins.
                self.backend.put(key, body, info.etag or "create")
                break
        else:
            return None
        if self.backend.head(layout.inbox_key(name)) is None:  # archived since we listed it
            self.release(claim)
            return None
        return claim

    def holds(self, claim: Claim) -> bool:
        """Whether `claim` still holds its file (not released, not taken over)."""
        return self._held(claim) is not None

    def release(self, claim: Claim) -> None:
        """Give `claim` up without archiving (the run failed): the file waits again for the
        next run. Nothing happens if the claim is no longer this run's."""
        if self._held(claim) is not None:
            self.backend.delete(layout.inbox_claim_key(claim.name))

    def _held(self, claim: Claim) -> str | None:
        """The ETag of the claim object when it is still `claim`'s, else None."""
        try:
            data, etag = self.backend.get(layout.inbox_claim_key(claim.name))
        except ObjectMissing:
            return None
        with suppress(ValueError, AttributeError):
            if json.loads(data).get("token") == claim.token:
                return etag or ""
        return None

    def local_copy(self, name: str) -> Path:
        """A local file holding inbox file `name`: a directory store's own file, else a download
        into a new private folder of the host cache (for `discard`); ObjectMissing if none."""
        key = layout.inbox_key(check_csv_name(name))
        if self.directory:
            path = self.directory / name
            if not path.is_file():
                raise ObjectMissing(f"store {self.backend.url}: no object {key}")
            return path
        folder = self._cache().download_dir()
        try:
            self.backend.get_file(key, folder / name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder / name

    def discard(self, path: str | Path) -> None:
        """Remove a copy `local_copy` downloaded (a directory store's own file stays)."""
        if not self.directory:
            shutil.rmtree(Path(path).parent, ignore_errors=True)

    def archive(self, claim: Claim, folder: str | None, *, rejected: bool = False,
                local: str | Path | None = None) -> str | None:
        """Move claimed file `claim.name` to ``processed/<folder>/`` (a dataset id; None:
        ``unchanged``; `rejected`: ``rejected``) without overwriting; where it went, None if
        archived already. `local`: a copy already downloaded. StorageError if taken over."""
        target = layout.REJECTED_DIR if rejected else (folder or layout.UNCHANGED_DIR)
        if "/" in target or target.startswith("."):
            raise StorageError(f"bad inbox archive folder {target!r}")
        claim_key = layout.inbox_claim_key(claim.name)
        source_key = layout.inbox_key(claim.name)
        etag = self._held(claim)
        if etag is None and self.backend.head(source_key) is None:
            return None  # archived already: by an earlier try of this call, or a taker's
        try:
            # Renewed first, so that no other run takes the claim over while the file moves.
            if not etag:
                raise WriteConflict(claim_key)
            self.backend.put(claim_key, _claim_body(claim), etag)
        except (WriteConflict, ObjectMissing):
            raise StorageError(f"inbox file {claim.name} of store {self.backend.url}: its claim "
                               "was taken over by another run, which archives it") from None
        if self.backend.head(source_key) is None:
            self.backend.delete(claim_key)  # moved by an earlier try that failed after it
            return None
        # A directory store's file is read in place (`local_copy`) and hard-linked, not copied.
        given = Path(local) if local is not None and not self.directory else None
        source = given if given is not None and given.is_file() else self.local_copy(claim.name)
        try:
            for n in count():
                name = f"{claim.name.removesuffix('.csv')}.{n}.csv" if n else claim.name
                with suppress(WriteConflict):
                    self.backend.put(layout.inbox_archive_key(target, name), source, "create")
                    break
        finally:
            if source != given:
                self.discard(source)
        self.backend.delete(source_key)
        self.backend.delete(claim_key)  # last: until now, no scan takes the file
        return self._address(layout.inbox_archive_key(target, name))


def _claim_body(claim: Claim) -> bytes:
    return json.dumps({"by": claim.by, "time": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": claim.token}).encode() + b"\n"
