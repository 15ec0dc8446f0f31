"""What gc removes, and in which order (the removal itself is `Store.gc`, under the locks).

Kept: every version an alias points to, the newest `keep` of each kind, and the parents
(transitively, across kinds) of everything kept. The rest is removed children before
parents, so a gc killed half-way never leaves a visible version whose parent is gone.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from graphlib import CycleError, TopologicalSorter

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
    doomed = [(k, i) for k in KINDS for i in ids[k] if (k, i) not in kept]
    return _children_first(doomed, read_manifest)


def _children_first(doomed: list[Version], read_manifest: ReadManifest) -> list[Version]:
    """`doomed` ordered so that every version comes before its parents; among versions
    whose children are all gone, the newest first."""
    rank = {node: -n for n, node in enumerate(sorted(doomed, key=lambda node: node[1]))}
    doomed_set = set(doomed)
    graph: TopologicalSorter[Version] = TopologicalSorter()
    for node in doomed:
        graph.add(node)
        try:
            parents = read_manifest(*node)["parents"]
        except CorruptVersionError:
            parents = {}  # its lineage is unknown; it is deleted anyway
        for kind, ids in parents.items():
            for parent in ((kind, i) for i in ids):
                if parent in doomed_set:
                    graph.add(parent, node)  # a parent waits for its child
    try:
        graph.prepare()
    except CycleError:
        # Only hand-made manifests can form a cycle; lineage order means nothing there.
        return sorted(doomed, key=rank.__getitem__)
    ready: list[tuple[int, Version]] = []
    order: list[Version] = []
    while graph.is_active():
        for node in graph.get_ready():
            heapq.heappush(ready, (rank[node], node))
        _, node = heapq.heappop(ready)
        order.append(node)
        graph.done(node)
    return order
