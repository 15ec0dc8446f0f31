"""The store's commit log: what is committed, where every alias points, and why.

Every change a reader sees (a version committed with its aliases, an alias moved, versions
removed by gc, an upload given up, a pin) is one *entry*, ``_log/<seq, 20 digits>.json``,
written create-only. Only one writer can write entry N+1, so writing it is both the commit and
the proof that nothing was committed since the state N its writer checked (Delta Lake's
``_delta_log`` rule). `State` is the log replayed: committed ids, aliases, the alias history
(`set_alias`'s entries, with reasons), pins, and tombstones (ids gc removed or gave up: never
committable again). Every `CHECKPOINT_EVERY` entries the whole state is written too
(``_log/<seq>.checkpoint.json``, named in ``_log/_last_checkpoint``, a hint). A store written
before the log is imported by its first entry (`legacy_state`). Pure data and rules here; the
byte operations are storage.store's.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from storage.errors import StorageError
from storage.ids import KINDS, is_version_id

__all__ = ["CHECKPOINT_EVERY", "LOG_DIR", "State", "apply", "checkpoint_key", "entry_key",
           "legacy_state", "parse_history", "parse_seq"]

LOG_DIR = "_log"
LAST_CHECKPOINT = f"{LOG_DIR}/_last_checkpoint"
CHECKPOINT_EVERY = 100  # entries between whole-state checkpoints (a checkpoint is ~50 B/version)
_DIGITS = 20


def entry_key(seq: int) -> str:
    return f"{LOG_DIR}/{seq:0{_DIGITS}d}.json"


def checkpoint_key(seq: int) -> str:
    return f"{LOG_DIR}/{seq:0{_DIGITS}d}.checkpoint.json"


def parse_seq(key: str) -> tuple[int, bool] | None:
    """(seq, is a checkpoint) of a log key; None for anything else."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, rest = name.partition(".")
    if len(stem) != _DIGITS or not stem.isdigit() or rest not in ("json", "checkpoint.json"):
        return None
    return int(stem), rest == "checkpoint.json"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class State:
    """The store as of entry `seq` (-1: no entry yet)."""

    seq: int = -1
    versions: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    history: dict[str, list[dict]] = field(default_factory=lambda: {k: [] for k in KINDS})
    pins: dict[str, dict] = field(default_factory=dict)  # token -> kind, id, until, holder
    tombstones: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def has(self, kind: str, version_id: str) -> bool:
        return version_id in self._sets()[0][kind]

    def dead(self, kind: str, version_id: str) -> bool:
        return version_id in self._sets()[1][kind]

    def _sets(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        # Rebuilt only after a change (apply() returns a new State): membership is O(1).
        cached = self.__dict__.get("_cache")
        if cached is None:
            cached = ({k: set(v) for k, v in self.versions.items()},
                      {k: set(v) for k, v in self.tombstones.items()})
            self.__dict__["_cache"] = cached
        return cached

    def pinned(self, now: datetime) -> list[tuple[str, str]]:
        """(kind, id) of every pin that has not expired at `now`."""
        return [(p["kind"], p["id"]) for p in self.pins.values()
                if datetime.fromisoformat(p["until"]) > now]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> State:
        try:
            raw = json.loads(data)
            state = cls(seq=int(raw["seq"]), pins=dict(raw["pins"]))
            for name in ("versions", "aliases", "history", "tombstones"):
                getattr(state, name).update((k, raw[name][k]) for k in KINDS if k in raw[name])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StorageError(f"{where}: not a store checkpoint ({error})") from None
        return state


def apply(state: State, entry: dict, where: str = "") -> State:
    """The state after `entry` (which must be entry ``state.seq + 1``); `state` is unchanged."""
    seq = entry.get("seq")
    if seq != state.seq + 1:
        raise StorageError(f"{where}: log entry {seq!r} does not follow entry {state.seq}")
    new = State(seq, *(copy.deepcopy(getattr(state, name)) for name in
                       ("versions", "aliases", "history", "pins", "tombstones")))
    for action in entry.get("actions", []):
        try:
            _apply_action(new, action, entry.get("time", ""))
        except (KeyError, TypeError, ValueError) as error:
            raise StorageError(f"{where}: bad action {action!r:.200} ({error})") from None
    return new


def _apply_action(state: State, action: dict, time: str) -> None:
    op = action["op"]
    if op == "import":
        imported = State.from_json(json.dumps({"seq": -1, **action["state"]}).encode(),
                                   "imported state")
        state.versions, state.aliases = imported.versions, imported.aliases
        state.history, state.tombstones = imported.history, imported.tombstones
        state.pins = imported.pins
        return
    if op == "begin":  # the log's first entry in a store that had none
        return
    if op == "unpin":
        state.pins.pop(action["token"], None)
        return
    kind = action["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if op == "add":
        ids = state.versions[kind]
        ids.append(action["id"])
        if len(ids) > 1 and ids[-2] > ids[-1]:
            ids.sort()
    elif op == "alias":
        previous = state.aliases[kind].get(action["name"])
        state.aliases[kind][action["name"]] = action["id"]
        if action.get("record"):
            state.history[kind].append({"time": time, "alias": action["name"],
                                        "id": action["id"], "previous": previous,
                                        "reason": action.get("reason", "")})
    elif op in ("remove", "abandon"):
        gone = set(action["ids"])
        state.versions[kind] = [i for i in state.versions[kind] if i not in gone]
        state.tombstones[kind] = sorted(set(state.tombstones[kind]) | gone)
        state.aliases[kind] = {n: i for n, i in state.aliases[kind].items() if i not in gone}
    elif op == "pin":
        state.pins[action["token"]] = {"kind": kind, "id": action["id"],
                                       "until": action["until"], "holder": action["holder"]}
    else:
        raise ValueError(f"unknown op {op!r}")


def parse_history(data: bytes, name: str | None = None) -> list[dict]:
    """The records of alias `name` (every alias when None) in a pre-log alias history file
    (one JSON object per line; a torn last line is skipped)."""
    records = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and (name is None or record.get("alias") == name):
            records.append(record)
    return records


def legacy_state(versions: dict[str, list[str]], aliases: dict[str, dict[str, str]],
                 history: dict[str, list[dict]]) -> dict[str, Any]:
    """The import action of a store written before the log (see the module docstring)."""
    return {"op": "import", "state": {
        "versions": {k: sorted(i for i in versions.get(k, []) if is_version_id(i))
                     for k in KINDS},
        "aliases": {k: dict(aliases.get(k, {})) for k in KINDS},
        "history": {k: list(history.get(k, [])) for k in KINDS},
        "pins": {}, "tombstones": {k: [] for k in KINDS}}}
