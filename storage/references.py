"""Resolving references and checking a publish request: shared by both stores.

`VersionLookup` is the part of the store that only reads names: what an id, alias or id
prefix stands for, and whether a publish's parents and expected aliases hold. The local
directory (storage.store) and object stores (storage.object_store) each supply four reads
(`_ids`, `_has_version`, `_read_alias`, `aliases`) and get the same answers and messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from storage import aliases as alias_files
from storage.errors import AliasMovedError, StorageError
from storage.ids import check_kind, is_alias_name, is_version_id, looks_like_id_prefix
from storage.manifests import to_json

__all__ = ["VersionLookup"]


class VersionLookup:
    """Reference resolution over a store's reads (see the module docstring)."""

    root: Any

    def _ids(self, kind: str) -> list[str]:
        raise NotImplementedError

    def _has_version(self, kind: str, version_id: str) -> bool:
        raise NotImplementedError

    def _has_version_now(self, kind: str, version_id: str) -> bool:
        """`_has_version` asked of the store itself, never of a cache: for writes that must
        not build on a version gc removed meanwhile."""
        return self._has_version(kind, version_id)

    def _read_alias(self, kind: str, name: str) -> str | None:
        raise NotImplementedError

    def aliases(self, kind: str) -> dict[str, str]:
        raise NotImplementedError

    def resolve(self, kind: str, ref: str) -> str:
        """The version id that ``ref`` (id, alias name or unique id prefix) stands for."""
        check_kind(kind)
        if not isinstance(ref, str) or not ref:
            raise StorageError(f"bad {kind} reference {ref!r}: expected a version id or alias")
        if is_version_id(ref):
            if self._has_version(kind, ref):
                return ref
        elif looks_like_id_prefix(ref):
            matches = [i for i in self._ids(kind) if i.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise StorageError(
                    f"ambiguous {kind} id prefix {ref!r}: matches {len(matches)} versions "
                    f"({', '.join(matches[:5])}{', ...' if len(matches) > 5 else ''})"
                )
        elif is_alias_name(ref):
            target = self._read_alias(kind, ref)
            if target is not None:
                if not self._has_version(kind, target):
                    raise StorageError(f"{kind} alias {ref!r} points to missing version {target}")
                return target
        raise StorageError(self._not_found(kind, ref))

    def _not_found(self, kind: str, ref: str) -> str:
        ids = self._ids(kind)
        message = f"unknown {kind} version or alias {ref!r} in store {self.root}"
        if not ids:
            return f"{message}; there are no {kind} versions yet"
        shown = ", ".join(ids[-5:])
        aliases = ", ".join(f"{name} -> {target}" for name, target in self.aliases(kind).items())
        return (
            f"{message}; {len(ids)} version(s) exist, newest: {shown}; aliases: {aliases or 'none'}"
        )

    def _check_publish(self, kind: str, aliases: Sequence[str],
                       expect: Mapping[str, str | None] | None,
                       parents: Mapping[str, Sequence[str]] | None,
                       params: Mapping[str, Any] | None, seed: int | None,
                       ) -> tuple[list[str], dict[str, list[str]], dict]:
        """A publish request checked before any work: (alias names, parent ids, params)."""
        check_kind(kind)
        alias_names = alias_files.check_alias_list(aliases)
        alias_files.check_alias_list(list(expect or {}))
        parent_ids = self._resolve_parents(kind, parents)
        params = dict(params or {})
        to_json(params, f"params of the new {kind} version")  # fail now, not after training
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise StorageError(f"seed must be an int or None, got {seed!r}")
        return alias_names, parent_ids, params

    def _resolve_parents(
        self, kind: str, parents: Mapping[str, Sequence[str]] | None
    ) -> dict[str, list[str]]:
        if parents is None:
            return {}
        if not isinstance(parents, Mapping):
            raise StorageError(f"parents must map kinds to lists of ids, got {parents!r}")
        resolved: dict[str, list[str]] = {}
        for parent_kind, refs in parents.items():
            check_kind(parent_kind)
            if isinstance(refs, str) or not isinstance(refs, Sequence):
                raise StorageError(f"parents[{parent_kind!r}] must be a list of ids, got {refs!r}")
            ids: list[str] = []
            for ref in refs:
                try:
                    version_id = self.resolve(parent_kind, ref)
                except StorageError as error:
                    raise StorageError(
                        f"cannot publish {kind}: parent {parent_kind} {ref!r} does not exist "
                        f"({error})"
                    ) from None
                if version_id not in ids:
                    ids.append(version_id)
            resolved[parent_kind] = ids
        return resolved

    def _check_parents_exist(self, kind: str, parents: dict[str, list[str]]) -> None:
        for parent_kind, ids in parents.items():
            for version_id in ids:
                if not self._has_version_now(parent_kind, version_id):
                    raise StorageError(
                        f"cannot publish {kind}: parent {parent_kind} version {version_id} "
                        "was removed while publishing (by gc?)"
                    )

    def _check_expected(self, kind: str, expect: Mapping[str, str | None],
                        action: str = "") -> None:
        for name, expected in expect.items():
            current = self._read_alias(kind, name)
            if current != expected:
                what = action or f"publish {kind}"
                built = "this version was built" if not action else "the caller decided"
                raise AliasMovedError(
                    f"cannot {what}: alias {name!r} moved to {current or '(unset)'} while "
                    f"{built} on {expected or '(unset)'}"
                )
