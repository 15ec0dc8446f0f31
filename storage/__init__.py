"""Versioned, immutable artifact store for charlm: it owns files and nothing else.

Storage knows where everything lives and in which format; it does not know what the bytes
mean (no CSV parsing, no models: it imports nothing from charlm or ingestion, and no prefect
or tensorflow). Every file name is in storage.layout; the dataset format is storage.datasets.

Every artifact (dataset, model, evaluation, generation) is an immutable *version* of one of
the KINDS: files plus a ``manifest.json`` (each file's sha256 and size, parents, params, seed,
code version, summary); *aliases* ("latest", "champion") are the only mutable names. One
engine (storage.store) runs over a byte backend (storage.backend: a directory or an object
store), with the same keys on both::

    <kind>/<id>/<file>, <kind>/<id>/manifest.json   a version, stored before its commit
    _log/<seq>.json, _log/<seq>.checkpoint.json     the commit log (storage.log)
    .work/<name>/ or .work/<name>.tar               resumable jobs' scratch (storage.workdirs)
    feeds/, inbox/                                  the feed buffer, CSVs waiting to be ingested
    <kind>/.aliases/, <kind>/.alias-history.jsonl   before the log: imported by its first entry

A version is visible once a log entry commits it, and that entry also moves its aliases; an
entry is written create-only, so it follows exactly the state its writer checked. Version ids
(``20261128-123456-123456-a1b2c3``: UTC time, then random hex) sort by creation time; alias
names never look like ids, so `Store.resolve` takes an id, an alias or a unique id prefix.
docs/storage.md describes the protocol and the races it survives.
"""

from storage.errors import AliasMovedError, CorruptVersionError, StorageError, cause, one_line
from storage.ids import KINDS, check_alias_name, check_kind, is_version_id, new_version_id
from storage.layout import MANIFEST
from storage.provenance import code_version, default_root
from storage.store import Problem, Staging, Store

__all__ = ["KINDS", "MANIFEST", "AliasMovedError", "CorruptVersionError", "Problem", "Staging",
           "Store", "StorageError", "cause", "check_alias_name", "check_kind", "code_version",
           "default_root", "is_version_id", "new_version_id", "one_line"]
