"""The pipeline's state on one screen: `charlm status` (plain text, or `--json`).

`pipeline_status(storage)` gathers the facts from the store's public reading API alone
(manifests, aliases, the alias history, the feed buffer, a quick `Store.verify`): the
champion and its lineage, the latest dataset, the last drift measurement and whether drift
is rising, the feed buffer, the last generation, the last training run and its outcome (and,
for it and the champion, the recurrent path that trained them: charlm.kernels), and
an integrity check that reads manifests and aliases but hashes nothing (`charlm verify`
does). It never writes: a store that was never created stays uncreated, and no lock is
taken (the readers used here read whole files that writers replace atomically).
`render_status(facts)` is the plain-text view of the same facts.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime
from typing import Any

from charlm.kernels import KernelStatus
from storage import KINDS, StorageError, Store
from tasks.common import current_champion, json_safe, open_store
from tasks.drift import drift_batches, evaluations_on_test, own_test_evaluation
from tasks.feeds import buffer_status
from tasks.presets import CHAMPION

WIDTH = 80  # the plain-text view wraps to fit a terminal (ids are 29 characters)
MAX_PROBLEMS = 5  # integrity problems quoted in full; the rest are counted
UNREADABLE = "unreadable"  # the key of a part that could not be read (its value: why)


def _when(stamp: str | None) -> str | None:
    """An ISO timestamp as `2026-12-04 05:21 UTC` (None stays None)."""
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp)
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.utcoffset() is not None
                                                else "")


def _bpc(manifest: dict | None) -> float | None:
    return manifest["summary"].get("bits_per_char") if manifest else None


def _network(manifest: dict) -> str:
    model = manifest["params"].get("model") or {}
    if not model:
        return "unknown network (imported?)"
    return f"{model.get('cell')} {model.get('hidden')}x{model.get('depth')}"


def _recurrent(manifest: dict) -> dict | None:
    """The recurrent path that trained a model (charlm.kernels.KernelStatus.to_dict); None
    for a model trained before it was recorded, or imported."""
    return manifest["summary"].get("recurrent")


def _newest(versions: list[dict], alias_target: str | None) -> dict | None:
    """The version an alias names, else the newest one (None when there is none)."""
    named = [m for m in versions if m["id"] == alias_target]
    return named[0] if named else (versions[-1] if versions else None)


def _champion(store: Store, storage: str | None, history: list[dict]) -> dict | None:
    champion_id = current_champion(storage)
    if champion_id is None:
        return None
    manifest = store.manifest("models", champion_id)
    dataset = (manifest["parents"].get("datasets") or [None])[0]
    crowned = [c for c in history if c["id"] == champion_id][-1:]
    return {"id": champion_id, "network": _network(manifest),
            "test_bits_per_char": _bpc(own_test_evaluation(store, champion_id, dataset)),
            "dataset": dataset, "trained_at": manifest["created_at"],
            # a warm-started model names the model it started from among its parents
            "started_from": (manifest["parents"].get("models") or [None])[0],
            "recurrent": _recurrent(manifest),
            "crowned_at": crowned[0]["time"] if crowned else None,
            "crowned_because": crowned[0]["reason"] if crowned else None}


def _dataset(store: Store, versions: list[dict]) -> dict | None:
    latest = _newest(versions, store.aliases("datasets").get("latest"))
    if latest is None:
        return None
    summary = latest["summary"]
    return {"id": latest["id"], "headlines": summary.get("rows"),
            "new_headlines": summary.get("new_rows"), "published_at": latest["created_at"],
            "versions": len(versions)}


def _excess(manifest: dict) -> float | None:
    """How far a batch's bits/char sit above the champion's own test figure (the raw
    figure when the test figure is unknown): comparable across champions."""
    summary = manifest["summary"]
    bpc, reference = summary.get("bits_per_char"), summary.get("champion_test_bpc")
    if bpc is None:
        return None
    return bpc - reference if reference is not None else bpc


def _drift(store: Store) -> dict | None:
    batches = drift_batches(store)
    if not batches:
        return None
    last, summary = batches[-1], batches[-1]["summary"]
    rising = None  # unknown with a single measurement
    if len(batches) > 1 and None not in (_excess(last), _excess(batches[-2])):
        rising = _excess(last) > _excess(batches[-2])
    return {"evaluation": last["id"], "dataset": summary.get("dataset"),
            "model": summary.get("model"), "new_headlines": summary.get("new_rows"),
            "bits_per_char": summary.get("bits_per_char"),
            "champion_test_bits_per_char": summary.get("champion_test_bpc"),
            "unseen_word_share": summary.get("unseen_word_share"),
            "measured_at": last["created_at"], "measurements": len(batches),
            "rising": rising}


def _feeds(storage: str | None) -> dict:
    buffer = buffer_status(storage)
    return {"items_waiting": buffer.waiting, "items_stored": buffer.stored,
            "oldest_waiting_since": buffer.oldest.isoformat() if buffer.oldest else None,
            "oldest_age_hours": (round(buffer.age_hours, 2) if buffer.age_hours is not None
                                 else None),
            "next_publish": buffer.next_publish()}


def _generation(store: Store) -> dict | None:
    versions = store.versions("generations")
    if not versions:
        return None
    last = versions[-1]
    return {"id": last["id"], "headlines": last["summary"].get("headlines"),
            "model": (last["parents"].get("models") or [None])[0],
            "generated_at": last["created_at"]}


def _outcome(store: Store, model_id: str, dataset: str | None,
             history: list[dict]) -> tuple[str, str]:
    """(outcome, why) of the training run that made `model_id`: the alias history for a
    promotion, else the two test evaluations `train_challenger` published side by side."""
    crowned = [c for c in history if c["id"] == model_id]
    if crowned:
        return "promoted", crowned[-1]["reason"] or "(no reason given)"
    scored = evaluations_on_test(store).get(dataset or "", [])
    own = next((i for i, m in enumerate(scored) if m["parents"]["models"] == [model_id]),
               None)
    if own is None:
        return "not evaluated", "no test evaluation of it (a comparison run, or interrupted)"
    faced = next((m for m in scored[own + 1:] if m["parents"]["models"] != [model_id]), None)
    if faced is None:
        return "not promoted", "no champion evaluation beside it"
    return "not promoted", (f"champion {faced['parents']['models'][0]} kept: "
                            f"{_bpc(faced):.4f} <= {_bpc(scored[own]):.4f} bits/char on the "
                            f"test split of dataset {dataset}")


def _training(store: Store, models: list[dict], history: list[dict]) -> dict | None:
    trained = [m for m in models if m["parents"].get("datasets")]  # imports have none
    if not trained:
        return None
    last = trained[-1]
    dataset = last["parents"]["datasets"][0]
    outcome, why = _outcome(store, last["id"], dataset, history)
    return {"model": last["id"], "network": _network(last), "dataset": dataset,
            "trained_at": last["created_at"],
            "started_from": (last["parents"].get("models") or [None])[0],
            "validation_bits_per_char": last["summary"].get("validation_bpc"),
            "test_bits_per_char": _bpc(own_test_evaluation(store, last["id"], dataset)),
            "recurrent": _recurrent(last), "outcome": outcome, "why": why}


def _integrity(store: Store, counts: dict[str, int]) -> dict:
    problems = [str(p) for p in store.verify(quick=True)]
    aliases = sum(len(store.aliases(kind)) for kind in KINDS)
    return {"ok": not problems, "manifests": sum(counts.values()), "aliases": aliases,
            "problems": len(problems), "first_problems": problems[:MAX_PROBLEMS],
            "checksums": "not checked here: charlm verify hashes every file"}


def _read(part: Callable[..., Any], *args: Any) -> Any:
    """`part(*args)`, or {"unreadable": why} when a file it reads is broken: one broken
    manifest must not hide the rest of the status (the integrity part names it)."""
    try:
        return part(*args)
    except StorageError as error:
        return {UNREADABLE: str(error)}


def pipeline_status(storage: str | None) -> dict[str, Any]:
    """Every fact `charlm status` shows, JSON-ready; reads the store, never writes it."""
    store = open_store(storage)
    facts: dict[str, Any] = {"store": str(store.root), "exists": store.exists()}
    if not facts["exists"]:
        facts["empty"] = True
        return facts
    versions = {kind: _read(store.versions, kind) for kind in KINDS}
    versions = {kind: found if isinstance(found, list) else [] for kind, found in versions.items()}
    counts = {kind: len(found) for kind, found in versions.items()}
    facts["versions"] = counts
    facts["empty"] = not any(counts.values()) and not _read(store.feeds.items)
    history = _read(store.alias_history, "models", CHAMPION)
    history = history if isinstance(history, list) else []
    facts.update(champion=_read(_champion, store, storage, history),
                 dataset=_read(_dataset, store, versions["datasets"]),
                 drift=_read(_drift, store), feeds=_read(_feeds, storage),
                 generation=_read(_generation, store),
                 training=_read(_training, store, versions["models"], history),
                 integrity=_integrity(store, counts))
    return json_safe(facts)


def _line(label: str, text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=f"{label:<11} ",
                         subsequent_indent=" " * 12, break_on_hyphens=False)


def _path(recurrent: dict | None) -> str:
    """`trained on kernels, mixed_bfloat16` or `trained on keras, float32: <why>`."""
    if not recurrent:
        return "recurrent path not recorded"
    return f"trained on {KernelStatus.from_dict(recurrent).describe()}"


def _champion_lines(champion: dict | None) -> list[str]:
    if not champion:
        return _line("champion", "none yet: `charlm train` crowns the first model")
    test = champion["test_bits_per_char"]
    lines = _line("champion", f"{champion['id']} {champion['network']}, test "
                  + (f"{test:.4f} bits/char" if test is not None else "not scored")
                  + f", trained on dataset {champion['dataset']} "
                    f"{_when(champion['trained_at'])}; "
                  + (f"started from model {champion['started_from']}"
                     if champion["started_from"] else "trained from scratch")
                  + f"; {_path(champion.get('recurrent'))}")
    if champion["crowned_because"]:
        lines += _line("", f"crowned {_when(champion['crowned_at'])}: "
                           f"{champion['crowned_because']}")
    return lines


def _dataset_lines(dataset: dict | None) -> list[str]:
    if not dataset:
        return _line("dataset", "none yet: `charlm ingest CSV`")
    new = dataset["new_headlines"]
    return _line("dataset", f"latest {dataset['id']}: {dataset['headlines']} headlines"
                 + (f", {new} new" if new is not None else "")
                 + f", published {_when(dataset['published_at'])}")


def _drift_lines(drift: dict | None) -> list[str]:
    if not drift:
        return _line("drift", "not measured yet (ingest new headlines while a champion exists)")
    reference = drift["champion_test_bits_per_char"]
    rising = {True: "rising", False: "not rising", None: "trend unknown (one measurement)"}
    return _line("drift", f"{drift['bits_per_char']:.4f} bits/char on the "
                 f"{drift['new_headlines']} new headlines of dataset {drift['dataset']}"
                 + (f" (champion's test split {reference:.4f})" if reference is not None
                    else "")
                 + f", {_when(drift['measured_at'])}; {rising[drift['rising']]}")


def _feeds_lines(feeds: dict) -> list[str]:
    if not feeds["items_stored"]:
        return _line("feeds", "no feed item yet (`charlm ingest-feed URL`)")
    age = (f", the oldest since {_when(feeds['oldest_waiting_since'])} "
           f"({feeds['oldest_age_hours']:.1f} h)" if feeds["items_waiting"] else "")
    return _line("feeds", f"{feeds['items_waiting']} item(s) waiting{age}; publishes "
                          f"{feeds['next_publish']}")


def _generation_lines(generation: dict | None) -> list[str]:
    return _line("generation", "none yet (`charlm generate champion -n 20`)" if not generation
                 else f"{generation['id']}: {generation['headlines']} headlines from model "
                      f"{generation['model']}, {_when(generation['generated_at'])}")


def _training_lines(training: dict | None) -> list[str]:
    return _line("training", "no training run yet" if not training
                 else f"model {training['model']} {training['network']} on dataset "
                      f"{training['dataset']}, {_when(training['trained_at'])} "
                      f"({_path(training.get('recurrent'))}): "
                      f"{training['outcome']}: {training['why']}")


def _integrity_lines(integrity: dict) -> list[str]:
    if integrity["ok"]:
        return _line("integrity", f"ok: {integrity['manifests']} manifests readable, "
                                  f"{integrity['aliases']} aliases resolve (checksums: "
                                  "`charlm verify`)")
    return _line("integrity", f"{integrity['problems']} problem(s): "
                 + "; ".join(integrity["first_problems"]) + " (`charlm verify` for all)")


PARTS = {"champion": _champion_lines, "dataset": _dataset_lines, "drift": _drift_lines,
         "feeds": _feeds_lines, "generation": _generation_lines,
         "training": _training_lines, "integrity": _integrity_lines}


def render_status(facts: dict[str, Any]) -> str:
    """The plain-text view of `pipeline_status`'s facts: a line or two per part."""
    root = facts["store"]
    if not facts["exists"]:
        return (f"no store at {root} yet: `charlm demo` or `charlm ingest CSV` creates it "
                "(--storage DIR or $CHARLM_STORAGE picks another)")
    if facts["empty"]:
        return f"store {root} holds nothing yet: `charlm ingest CSV` or `charlm demo` fills it"
    counts = ", ".join(f"{kind} {n}" for kind, n in facts["versions"].items())
    lines = [f"store {root}: {counts}"]
    for part, render in PARTS.items():
        value = facts[part]
        if isinstance(value, dict) and UNREADABLE in value:
            lines += _line(part, f"unreadable: {value[UNREADABLE]}")
        else:
            lines += render(value)
    return "\n".join(lines)
