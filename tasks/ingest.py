"""The ingestion stage: headline CSVs in, a dataset version out (only when rows are new).

The work itself is the `ingestion` package's; these tasks add the store (the previous
version, publishing) and the inbox the `ingest-headlines` flow watches (storage.inbox: each
waiting CSV is claimed by one run, ingested from a local file and archived).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import IngestConfig, from_dict, to_dict
from ingestion.plan import IngestPlan, plan_ingest, write_version
from storage import AliasMovedError, StorageError, Store, one_line
from storage.backend import ObjectMissing
from storage.fsutil import sha256_file
from storage.inbox import Claim
from tasks.common import open_store, run_logger


@dataclass(frozen=True)
class IngestOutcome:
    dataset_id: str | None  # the new version, or the unchanged latest when nothing was new
    published: bool
    new_rows: int
    duplicates: int
    quarantined_rows: int
    rows: int
    message: str


def latest_dataset(storage: str | None) -> str | None:
    """The id of the latest dataset version, None when there is none."""
    return _latest(open_store(storage))


def source_files(paths: list[str], origins: list[str] | None = None) -> list[dict[str, str]]:
    """What a manifest records of input files: absolute path (or the origin given for it:
    an object store's inbox file is read from a download) and sha256 of each."""
    if origins is not None and len(origins) != len(paths):
        raise ValueError(f"{len(origins)} origins given for {len(paths)} files")
    return [{"path": origins[i] if origins else str(Path(p).resolve()),
             "sha256": sha256_file(Path(p))} for i, p in enumerate(paths)]


def ingest_config(storage: str | None, dataset: str) -> IngestConfig | None:
    """The cleaning rules the dataset version was ingested with (None if it records none)."""
    recorded = open_store(storage).manifest("datasets", dataset)["params"].get("ingest")
    return from_dict(IngestConfig, recorded) if recorded is not None else None


@task(name="ingest-csv", cache_policy=NO_CACHE)
def ingest_csvs(storage: str | None, paths: list[str],
                cleaning: IngestConfig = IngestConfig(),
                origins: list[str] | None = None) -> IngestOutcome:
    """Clean and merge `paths` into the latest dataset; publish a version if any row is new.
    `origins`: where each file came from, recorded instead of its path (an inbox file's
    address when `paths` are local copies)."""
    if not paths:
        raise ValueError("no CSV files given")
    store = open_store(storage)
    files = [Path(p) for p in paths]
    sources = source_files(paths, origins)

    def build(previous_dir: Path | None) -> Publication:
        return Publication(plan_ingest(previous_dir, files, cleaning),
                           {"ingest": to_dict(cleaning), "sources": sources})

    dataset_id, previous, plan = publish_on_latest(store, build)
    names = ", ".join(p.name for p in files)
    if dataset_id is None:
        message = f"{names}: {plan.describe()}; dataset {previous or '(none)'} unchanged"
        run_logger().info(message)
        return IngestOutcome(previous, False, 0, plan.duplicates, plan.quarantined_rows,
                             plan.rows, message)
    message = f"{names}: {plan.describe()}; published dataset {dataset_id}"
    run_logger().info(message)
    return IngestOutcome(dataset_id, True, plan.new_rows, plan.duplicates,
                         plan.quarantined_rows, plan.rows, message)


PUBLISH_ATTEMPTS = 5  # plans made again when another writer moved "latest" meanwhile


@dataclass(frozen=True)
class Publication:
    """A planned dataset version and what its manifest records besides the plan's summary."""

    plan: IngestPlan
    params: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)


def publish_on_latest(store: Store, build: Callable[[Path | None], Publication | None]
                      ) -> tuple[str | None, str | None, IngestPlan | None]:
    """Plan a dataset version on top of the latest one and publish it, if it adds rows.

    `build(previous_dir)` plans on the latest version's directory (None when there is none)
    and returns the `Publication`, or None when there is nothing to plan. Should another
    writer (a CSV ingestion, a feed publish) move "latest" meanwhile, the version is planned
    again on the new latest rather than publishing on a stale parent, which would drop that
    writer's rows from "latest". Returns (the new id or None, the parent, the plan or None).
    """
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        previous = _latest(store)
        built = build(store.path("datasets", previous) if previous else None)
        if built is None or not built.plan.changed:
            return None, previous, built.plan if built else None
        try:
            with store.publish("datasets", parents={"datasets": [previous]} if previous else {},
                               params=built.params, expect={"latest": previous}) as staging:
                staging.summary.update(write_version(built.plan, staging.path))
                staging.summary.update(built.summary)
            return staging.id, previous, built.plan
        except AliasMovedError as error:
            if attempt == PUBLISH_ATTEMPTS:
                raise
            run_logger().warning("%s; planning again", error)
    raise AssertionError("unreachable")


def _latest(store: Store) -> str | None:
    try:
        return store.resolve("datasets", "latest")
    except StorageError:
        return None


@dataclass(frozen=True)
class InboxFile:
    """An inbox CSV this run claimed (storage.inbox): ingest `path`, then archive it."""

    name: str
    path: str  # a local file holding it (a directory store's own file, or a download)
    claim: Claim


@task(name="claim-inbox", cache_policy=NO_CACHE)
def claim_inbox(storage: str | None, names: list[str] | None = None,
                label: str = "") -> list[InboxFile]:
    """Claim the CSVs waiting in the store's inbox (only `names`, when given), oldest first,
    each with a local file to ingest; files another run holds are left to it. `label`
    tells people which run holds a claim."""
    inbox = open_store(storage).inbox
    claimed: list[InboxFile] = []
    try:
        for name in inbox.waiting() if names is None else names:
            claim = inbox.claim(name, label)
            if claim is None:
                run_logger().info("%s: claimed by another run, left to it", name)
                continue
            try:
                path = inbox.local_copy(name)
            except ObjectMissing:  # archived by a run whose stale claim we took over
                inbox.release(claim)
                continue
            except BaseException:
                inbox.release(claim)
                raise
            claimed.append(InboxFile(name, str(path), claim))
    except BaseException:
        release_inbox(storage, claimed)  # a failed scan blocks no file for the lease
        raise
    return claimed


@task(name="archive-inbox", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def archive_inbox(storage: str | None, files: list[InboxFile], dataset_id: str | None,
                  rejected: bool = False) -> list[str]:
    """Move ingested inbox files aside, never overwriting: to processed/<dataset id>/,
    processed/unchanged/ (dataset_id None) or processed/rejected/ (unreadable files); where
    each went. Their claims go with them."""
    inbox = open_store(storage).inbox
    moved = []
    for file in files:
        where = inbox.archive(file.claim, dataset_id, rejected=rejected, local=file.path)
        inbox.discard(file.path)
        if where is not None:
            moved.append(where)
    return moved


def release_inbox(storage: str | None, files: list[InboxFile]) -> None:
    """Give up the claims on `files` without archiving them (the run failed before): they
    wait for the next run. Never raises: it runs while another error is on its way up."""
    inbox = open_store(storage).inbox
    for file in files:
        try:
            inbox.discard(file.path)
            inbox.release(file.claim)
        except StorageError as error:
            run_logger().warning("%s", one_line(f"inbox file {file.name}: claim not released "
                                                "(it lapses after an hour)", error))
