"""Versioned, immutable artifact store for charlm: it owns files and nothing else.

Storage knows where everything lives and in which format; it does not know what the bytes
mean (no CSV parsing, no models: it imports nothing from charlm or ingestion). Every file
name the project writes is in storage.layout; the dataset format is storage.datasets.

Every artifact (a dataset, a trained model, an evaluation, a batch of generated headlines) is a
*version* of one of the KINDS. A version is a directory of files plus a ``manifest.json`` that
records each file's sha256 and size, the versions it was made from (``parents``), the
parameters, seed and code version that made it, and a free-form ``summary``. Versions are never
modified after publishing; *aliases* ("latest", "champion", ...) are the only mutable names.

On-disk layout (root: ``default_root()``, i.e. ``$CHARLM_STORAGE`` or ``./charlm-store``)::

    <root>/<kind>/<id>/...                  a published version: the caller's files
    <root>/<kind>/<id>/manifest.json        written last; its presence marks a complete version
    <root>/<kind>/.aliases/<name>           text file holding one version id
    <root>/<kind>/.alias-history.jsonl      every alias change by set_alias, with its reason
    <root>/<kind>/.lock                     lock file for alias updates, commits and gc
    <root>/<kind>/.staging/<id>.<owner>/    a version being written by <owner> = <pid>@<host id>
    <root>/<kind>/.staging/<id>.<owner>.lock  held by that process while the directory exists
    <root>/<kind>/.staging/<id>.<owner>.gc/   a version gc is deleting
    <root>/inbox/                           new CSVs for the ingest flow; processed/ keeps done ones
    <root>/feeds/                           live feeds: item buffer, validators (storage.feeds)
    <root>/.work/<name>/                    scratch space of resumable jobs (Store.work_dir)

Version ids look like ``20261128-123456-123456-a1b2c3`` (UTC time of creation to the
microsecond, then random hex): they sort by creation time and never collide across processes.
Alias names use ``[a-z0-9_-]`` and must not look like an id, so a reference is never ambiguous:
``Store.resolve`` accepts an id, an alias, or a unique prefix of an id.

Publishing protocol (``Store.publish``): the caller writes into an empty staging directory on
the same filesystem; on success every file is hashed and fsynced, made read-only, the manifest
is written and fsynced, and the directory is renamed into place in one atomic step, after which
the aliases are updated. A process killed at any moment therefore leaves either nothing visible
or a complete version; its staging leftovers are removed by the next publish
(``Store.clean_staging``), which only touches directories whose owner process is gone.
A publish may name the aliases it built on (``expect={"latest": id}``): if one moved
meanwhile, nothing is published (``AliasMovedError``) and the caller plans again, so two
writers building on "latest" (a CSV ingestion, a feed publish) never drop each other's rows.

Object stores: a root that is a URL (``s3://bucket/prefix``, ``gs://``, ``az://``,
``memory://name``) opens an `ObjectStore` (storage.object_store) with the same API and the
same layout as keys, built on storage.backend (a few byte operations with conditional
writes, through obstore). There a version's files are uploaded first and its manifest is
written create-only as the one commit point; aliases and the alias history change by
compare-and-swap on ETags; versions are read through a host-local cache keyed by sha256
(storage.cache). No lock and no pid is involved; docs/object-store.md says what it
guarantees.

Modules: store (the local `Store` and publishing), references (resolving ids and aliases,
shared by both stores), manifests, aliases, locks, verify, gc, staging (clean-up after killed
processes), workdirs, layout (every file name), datasets (the dataset file format), feeds
(the live feeds' item buffer and validators) over feed_files (their local or object-store
files), backend, object_store, object_maintenance (its verify), cache, ids, fsutil,
provenance, errors.

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
