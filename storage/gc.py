"""What gc removes (the removal itself is `Store.gc`: one log entry).

Kept: every version an alias or a pin points to, the newest `keep` of each kind, and the
parents (transitively, across kinds) of everything kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from storage.errors import CorruptVersionError
from storage.ids import KINDS

__all__ = ["Version", "plan_gc"]

Version = tuple[str, str]  # (kind, version id)
ReadManifest = Callable[[str, str], dict]


def plan_gc(ids: dict[str, list[str]], aliased: Iterable[Version], keep: int,
            read_manifest: ReadManifest) -> list[Version]:
    """The versions to remove, children first.

    `ids` lists every version of each kind, oldest first; `aliased` are the versions aliases
    point to; `read_manifest(kind, id)` raises CorruptVersionError for a bad manifest, in
    which case gc refuses to run if that version is kept (its lineage is unknown).
    """
    kept: set[Version] = {v for v in aliased if v[1] in ids[v[0]]}
    if keep:
        kept.update((kind, version_id) for kind in KINDS for version_id in ids[kind][-keep:])
    pending = list(kept)
    while pending:
        kind, version_id = pending.pop()
        try:
            manifest = read_manifest(kind, version_id)
        except CorruptVersionError as error:
            raise CorruptVersionError(
                kind, version_id, error.file,
                f"{error.reason}; gc refuses to run without the lineage of every kept version",
            ) from None
        for parent_kind, parent_ids in manifest["parents"].items():
            for parent_id in parent_ids:
                if (parent_kind, parent_id) not in kept and parent_id in ids[parent_kind]:
                    kept.add((parent_kind, parent_id))
                    pending.append((parent_kind, parent_id))
    # Children first: a version's parents are older, of the same or an earlier kind (the
    # removal itself is one log entry, so no order is ever half done).
    doomed = [(k, i) for k in KINDS for i in ids[k] if (k, i) not in kept]
    return sorted(doomed, key=lambda v: (KINDS.index(v[0]), v[1]), reverse=True)
