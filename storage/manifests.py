"""Manifests: what a version holds and where it came from, written last when publishing.

A manifest (``manifest.json`` in the version's directory) records the sha256 and size of
every file, the versions the new one was made from (``parents``), the parameters, seed and
code version that made it, and a free-form ``summary``. `build_manifest` hashes and seals
a staging directory's files, `seal` writes the manifest and makes the tree durable, and
`parse_manifest` refuses anything that is not a well-formed manifest of the expected version.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from storage.errors import CorruptVersionError, StorageError
from storage.fsutil import fsync_dir, hash_and_sync, write_file
from storage.ids import KINDS, id_time, is_version_id
from storage.layout import MANIFEST
from storage.provenance import code_version

__all__ = ["FORMAT", "build_manifest", "parse_manifest", "seal", "to_json"]

FORMAT = 1
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_HEX = set("0123456789abcdef")


def build_manifest(kind: str, version_id: str, directory: Path, parents: dict[str, list[str]],
                   params: dict, seed: int | None, summary: dict) -> dict:
    """Hash and fsync every file under `directory`, make it read-only, describe it all."""
    if not directory.is_dir():
        raise StorageError(f"staging directory of {kind} version {version_id} vanished: "
                           f"{directory}")
    files: dict[str, dict] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            full = Path(dirpath, name)
            rel = full.relative_to(directory).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise StorageError(
                    f"cannot publish {kind}: {rel!r} is not a regular file "
                    "(symlinks and special files cannot be stored)"
                )
            if rel == MANIFEST:
                raise StorageError(
                    f"cannot publish {kind}: the file name {MANIFEST!r} is reserved "
                    "for the store's manifest"
                )
            sha, size = hash_and_sync(full)
            files[rel] = {"sha256": sha, "size": size}
            # Read-only files make accidental in-place edits of a published version fail.
            os.chmod(full, stat.S_IMODE(mode) & ~_WRITE_BITS)
    return {
        "format": FORMAT,
        "kind": kind,
        "id": version_id,
        "created_at": id_time(version_id).isoformat(),
        "published_at": datetime.now(timezone.utc).isoformat(),
        "files": files,
        "parents": parents,
        "params": params,
        "seed": seed,
        "code_version": code_version(),
        "summary": summary,
    }


def seal(directory: Path, manifest: dict) -> None:
    """Write the manifest (last) and make the whole staging tree durable."""
    data = to_json(manifest, f"summary of the new {manifest['kind']} version")
    manifest_path = directory / MANIFEST
    write_file(manifest_path, data)
    os.chmod(manifest_path, 0o444)
    # Deepest directories first, so each parent's fsync covers a child that is complete.
    directories = [Path(d) for d, _, _ in os.walk(directory)]
    for path in reversed(directories):
        fsync_dir(path)


def parse_manifest(raw: bytes, kind: str, version_id: str) -> dict:
    """The manifest of version `version_id` of `kind` from its bytes, checked."""
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise CorruptVersionError(
            kind, version_id, MANIFEST, f"unreadable or not valid JSON ({error})"
        ) from None
    problem = _manifest_problem(data, kind, version_id)
    if problem:
        raise CorruptVersionError(kind, version_id, MANIFEST, problem)
    return data


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays (losses, accuracies) are common in summaries; accept them
    # without importing numpy here.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} value {value!r:.80} is not JSON serializable")


def to_json(value: Any, what: str) -> bytes:
    """`value` as indented, key-sorted JSON bytes; StorageError naming `what` if it cannot be."""
    try:
        text = json.dumps(value, indent=2, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as error:
        raise StorageError(f"{what} cannot be stored as JSON: {error}") from None
    return (text + "\n").encode()


def _manifest_problem(data: Any, kind: str, version_id: str) -> str | None:
    """Why ``data`` is not a valid manifest of ``kind``/``version_id`` (None if it is)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != FORMAT:
        return f"unsupported format {data.get('format')!r} (expected {FORMAT})"
    if data.get("kind") != kind or data.get("id") != version_id:
        return f"describes {data.get('kind')!r}/{data.get('id')!r}, not this version"
    for key, types in (
        ("created_at", str),
        ("code_version", str),
        ("files", dict),
        ("parents", dict),
        ("params", dict),
        ("summary", dict),
    ):
        if not isinstance(data.get(key), types):
            return f"field {key!r} is missing or not a {types.__name__}"
    if data.get("seed") is not None and not isinstance(data["seed"], int):
        return f"field 'seed' is not an int: {data['seed']!r}"
    for rel, entry in data["files"].items():
        parts = rel.split("/")
        if rel == MANIFEST or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            return f"bad file name {rel!r}"
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("size"), int)
            and entry["size"] >= 0
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            and set(entry["sha256"]) <= _HEX
        ):
            return f"bad entry for file {rel!r}: {entry!r}"
    for parent_kind, ids in data["parents"].items():
        if parent_kind not in KINDS or not isinstance(ids, list):
            return f"bad parents entry {parent_kind!r}: {ids!r}"
        if not all(is_version_id(i) for i in ids):
            return f"bad parent id in {parent_kind!r}: {ids!r}"
    return None
