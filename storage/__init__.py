"""Versioned, immutable artifact store for charlm: it owns files and nothing else.

Storage knows where everything lives and in which format; it does not know what the bytes
mean (no CSV parsing, no models: it imports nothing from charlm or ingestion). Every file
name the project writes is in storage.layout; the dataset format is storage.datasets.

Every artifact (a dataset, a trained model, an evaluation, a batch of generated headlines) is a
*version* of one of the KINDS: a set of files plus a ``manifest.json`` that records each file's
sha256 and size, the versions it was made from (``parents``), the parameters, seed and code
version that made it, and a free-form ``summary``. Versions are never modified after they are
committed; *aliases* ("latest", "champion", ...) are the only mutable names.

One engine (storage.store) runs over a byte backend (storage.backend): a local directory or an
object store (``s3://``, ``gs://``, ``az://``, ``https://``, ``memory://``), with the same keys::

    <kind>/<id>/<file>                 a version's files, stored before the commit
    <kind>/<id>/manifest.json          its manifest, stored with the files
    _log/<seq>.json                    the commit log: entry N, written create-only; committing
                                       a version, moving an alias, gc's removals, pins
    _log/<seq>.checkpoint.json         the whole state every 100 entries (+ _log/_last_checkpoint)
    .work/<name>/ or .work/<name>.tar  scratch space of resumable jobs (storage.workdirs)
    feeds/                             live feeds: item buffer, validators (storage.feeds)
    inbox/<name>.csv                   new CSVs for the ingest flow; inbox/.claims/<name> (the
                                       run ingesting one), inbox/processed/ (storage.inbox)
    <kind>/.aliases/, <kind>/.alias-history.jsonl
                                       aliases and their history before the log: read once
                                       and imported by the first commit (storage.log)

A version is visible once a log entry commits it, and only then; the entry that commits it
also moves its aliases and is written only if nothing else was committed since the state its
writer checked (``expect={"latest": id}``), so two writers building on "latest" never drop each
other's rows and a reader never sees a version that is withdrawn. A directory backend writes
by temp file, fsync and a no-clobber link; an object store by ``If-None-Match: *``.
Version ids look like ``20261128-123456-123456-a1b2c3`` (UTC time of creation to the
microsecond, then random hex): they sort by creation time and never collide across processes.
Alias names use ``[a-z0-9_-]`` and must not look like an id, so ``Store.resolve`` accepts an
id, an alias, or a unique prefix of an id. docs/storage.md describes the protocol and what
each race it survives looks like.

Modules: store (the engine), log (the commit log and its state), backend (directory and
obstore byte operations), cache (an object store's host-local cache), manifests, gc (what gc
removes), verify (`Problem`), workdirs, inbox (CSVs waiting for the ingest flow, each claimed
once), feeds (the feed buffer) over feed_files, layout (every
file name), datasets (the dataset file format), checkpoints, ids, fsutil, provenance, errors.

This package must not import prefect or tensorflow: it is shared by every other layer.
"""

from storage.errors import AliasMovedError, CorruptVersionError, StorageError, cause, one_line
from storage.ids import KINDS, check_alias_name, check_kind, is_version_id, new_version_id
from storage.layout import MANIFEST
from storage.provenance import code_version, default_root
from storage.store import Problem, Staging, Store

__all__ = [
    "KINDS",
    "MANIFEST",
    "AliasMovedError",
    "CorruptVersionError",
    "Problem",
    "Staging",
    "Store",
    "StorageError",
    "cause",
    "check_alias_name",
    "check_kind",
    "code_version",
    "default_root",
    "is_version_id",
    "new_version_id",
    "one_line",
]
