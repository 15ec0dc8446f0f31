"""Upkeep of an object store: `verify` (committed versions against their manifests,
aliases, abandoned uploads; the object-store counterpart of storage.verify), and finding and
deleting versions and the leftovers of interrupted publishes.

A file is checked by its listed size here; its sha256 is checked whenever it is downloaded
(storage.cache), so a corrupted object never reaches a reader either way.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from storage.errors import CorruptVersionError, StorageError
from storage.layout import ALIASES_DIR, MANIFEST
from storage.verify import Problem

if TYPE_CHECKING:
    from storage.object_store import ObjectStore

__all__ = ["abandoned_uploads", "delete_version", "verify_kind"]


def abandoned_uploads(store: ObjectStore, kind: str, min_age_s: float) -> list[str]:
    """Ids of `kind` with uploaded files but no manifest, untouched for `min_age_s`."""
    _, objects, _ = store._listing(kind)
    cutoff = time.time() - min_age_s
    return sorted(i for i, infos in objects.items()
                  if not any(o.key.endswith(f"/{MANIFEST}") for o in infos)
                  and max(o.modified for o in infos) <= cutoff)


def delete_version(store: ObjectStore, kind: str, version_id: str) -> bool:
    """Remove a version's manifest first (it is invisible from then on), then its files."""
    store.backend.delete(store._manifest_key(kind, version_id))
    store._manifests.pop((kind, version_id), None)
    for info in store.backend.list(f"{kind}/{version_id}/"):
        store.backend.delete(info.key)
    return True


def verify_kind(store: ObjectStore, kind: str, check_files: bool = True) -> list[Problem]:
    """What is wrong with the versions and aliases of `kind` in `store` (without
    `check_files`: manifests, parents and aliases only)."""
    committed, objects, other = store._listing(kind)
    problems = [Problem(kind, entry, "", "unexpected entry in the store")
                for entry in sorted(set(other))]
    for version_id in sorted(committed):
        try:
            manifest = store._read_manifest(kind, version_id)
        except CorruptVersionError as error:
            problems.append(Problem(kind, version_id, error.file, error.reason))
            continue
        sizes = {info.key.split("/", 2)[2]: info.size for info in objects[version_id]}
        if not check_files:
            sizes = {rel: entry["size"] for rel, entry in manifest["files"].items()}
        for rel, entry in manifest["files"].items():
            if rel not in sizes:
                problems.append(Problem(kind, version_id, rel, "missing"))
            elif sizes[rel] != entry["size"]:
                problems.append(Problem(kind, version_id, rel, f"size is {sizes[rel]} bytes, "
                                                               f"manifest says {entry['size']}"))
        for rel in sorted(set(sizes) - set(manifest["files"]) - {MANIFEST}):
            problems.append(Problem(kind, version_id, rel, "unexpected file not in manifest"))
        for parent_kind, ids in manifest["parents"].items():
            for parent_id in ids:
                if not store._has_version_now(parent_kind, parent_id):
                    problems.append(Problem(kind, version_id, MANIFEST,
                                            f"parent {parent_kind} version {parent_id} is missing"))
    for version_id in store.abandoned_uploads(kind):
        problems.append(Problem(kind, version_id, "", "uploaded files without a manifest (an "
                                                      "interrupted publish; gc removes them)"))
    for info in store.backend.list(f"{kind}/{ALIASES_DIR}/"):
        name = info.key.rsplit("/", 1)[1]
        try:
            target = store._read_alias(kind, name)
        except StorageError as error:
            problems.append(Problem(kind, "", f"{ALIASES_DIR}/{name}", str(error)))
            continue
        if target is not None and target not in committed:
            problems.append(Problem(kind, target, f"{ALIASES_DIR}/{name}",
                                    f"alias {name!r} points to a missing version"))
    return problems
