"""The `ingest-headlines` flow: new CSVs (the store's inbox, or given paths) -> a dataset version.

Run on a schedule by the `ingest-headlines/inbox` deployment. Drop CSV files into the
store's inbox: `<store>/inbox/` of a directory store (write them under another name and
rename to *.csv when complete: a scan takes every *.csv it sees), the `inbox/` prefix of an
object store (`aws s3 cp new.csv s3://bucket/prefix/inbox/` from anywhere: an upload
appears whole). Each file is claimed by one run (storage.inbox), so runs that overlap never
ingest or archive a file twice. After a run, each inbox file is moved to
`inbox/processed/<dataset id>/` (or `processed/unchanged/` when it held nothing new, or
`processed/rejected/` when it could not be read at all). When a version was published the
champion is scored on its new headlines (tasks.drift.record_drift: the drift evaluation and
the `dataset-drift` artifact; a failure there is logged and never fails the run), then the
flow emits the `charlm.dataset.published` event, which triggers training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger

from charlm.config import IngestConfig
from ingestion.reasons import IngestError
from storage import one_line
from tasks.common import open_store
from tasks.drift import record_drift
from tasks.events import emit_dataset_published
from tasks.ingest import (
    InboxFile,
    IngestOutcome,
    archive_inbox,
    claim_inbox,
    ingest_csvs,
    release_inbox,
)

FLOW_NAME = "ingest-headlines"
DEFAULT_CLEANING = IngestConfig()  # frozen: safe as a shared default


@dataclass
class IngestRun:
    """What one run did (the flow's return value)."""

    dataset_id: str | None  # the latest dataset version after the run
    published: list[str] = field(default_factory=list)  # versions this run published
    files: list[str] = field(default_factory=list)  # CSVs read
    new_rows: int = 0
    archived: list[str] = field(default_factory=list)  # where inbox files were moved
    rejected: dict[str, str] = field(default_factory=dict)  # file -> why it was unreadable
    event_id: str | None = None
    drift: list[str] = field(default_factory=list)  # drift evaluations recorded


def _inbox_paths(storage: str | None, paths: list[str]) -> dict[str, str]:
    """{path: name} of those `paths` that are files of a directory store's inbox folder
    (archived like the files a scan finds); an object store's inbox has no local files."""
    folder = open_store(storage).inbox.directory
    if folder is None:
        return {}
    return {p: Path(p).name for p in paths if Path(p).resolve().parent == folder.resolve()
            and Path(p).name.endswith(".csv") and not Path(p).name.startswith(".")}


@flow(name=FLOW_NAME, description="Ingest new headline CSVs into a new dataset version.")
def ingest_headlines(paths: list[str] | None = None, cleaning: IngestConfig = DEFAULT_CLEANING,
                     drift: bool = True, storage: str | None = None) -> IngestRun:
    """Ingest `paths`, or every CSV waiting in the store's inbox when `paths` is not given.

    A dataset version is published only when some row is new. Files in the inbox are moved
    aside afterwards (explicit paths elsewhere are left alone); each is claimed first, so
    of several runs at once exactly one ingests and archives it. A file that cannot be read
    at all does not block the others: the run ingests the rest, moves it to
    inbox/processed/rejected/ and then fails, naming it.

    Args:
        paths: CSV files (publish_date,headline_text) to ingest; default: the inbox.
        cleaning: how rows are cleaned and split (defaults as `charlm ingest`).
        drift: score the champion on each published version's new headlines before the
            event triggers retraining.
        storage: artifact store root (default: $CHARLM_STORAGE or ./charlm-store).
    """
    log = get_run_logger()
    label = _run_label()
    if paths:
        files = list(paths)
        named = _inbox_paths(storage, files)
        claimed = claim_inbox(storage, sorted(set(named.values())), label) if named else []
        by_name = {f.name: f for f in claimed}
        # An inbox file another run holds is still ingested (it was asked for), not archived.
        inbox_files = {p: by_name[name] for p, name in named.items() if name in by_name}
    else:
        claimed = claim_inbox(storage, None, label)
        files = [f.path for f in claimed]
        inbox_files = {f.path: f for f in claimed}
    if not files:
        log.info("no CSV files in %s: nothing to ingest", open_store(storage).inbox.where)
        return IngestRun(dataset_id=None)
    archived: set[str] = set()
    try:
        return _ingest(storage, files, inbox_files, archived, cleaning, drift)
    finally:
        # A run that fails before archiving lets its claims go: the next run takes them.
        release_inbox(storage, [f for p, f in inbox_files.items() if p not in archived])


def _ingest(storage: str | None, files: list[str], inbox_files: dict[str, InboxFile],
            archived: set[str], cleaning: IngestConfig, drift: bool) -> IngestRun:
    """The flow's work once the files are known (`inbox_files`: those of `files` claimed in
    the inbox); adds each of them it archives to `archived`."""
    log = get_run_logger()
    origins = [inbox_files[p].claim.source if p in inbox_files else p for p in files]
    origin = dict(zip(files, origins))
    outcomes: list[tuple[list[str], IngestOutcome]] = []
    rejected: dict[str, str] = {}
    try:
        outcomes.append((files, ingest_csvs(storage, files, cleaning, origins)))
    except IngestError as error:
        if len(files) == 1:
            rejected[files[0]] = str(error)
        else:
            # One unreadable file fails the whole batch; retry file by file to find it and
            # still publish the rest (one version per good file, each on top of the last).
            log.warning("%s", one_line(f"batch ingestion of {len(files)} files failed, "
                                       "ingesting them one by one", error))
            for path in files:
                try:
                    outcomes.append(([path], ingest_csvs(storage, [path], cleaning,
                                                         [origin[path]])))
                except IngestError as file_error:
                    rejected[path] = str(file_error)

    run = IngestRun(dataset_id=None, files=[origin[p] for p in files],
                    rejected={origin[p]: why for p, why in rejected.items()})
    for group, outcome in outcomes:
        run.dataset_id = outcome.dataset_id
        run.new_rows += outcome.new_rows
        if outcome.published and outcome.dataset_id:
            run.published.append(outcome.dataset_id)
        moved = [inbox_files[p] for p in group if p in inbox_files]
        if moved:
            run.archived += archive_inbox(storage, moved,
                                          outcome.dataset_id if outcome.published else None)
            archived.update(p for p in group if p in inbox_files)
    bad_inbox = [inbox_files[p] for p in rejected if p in inbox_files]
    if bad_inbox:
        run.archived += archive_inbox(storage, bad_inbox, None, rejected=True)
        archived.update(p for p in rejected if p in inbox_files)

    if run.published and drift:
        for dataset_id in run.published:  # before the event: the champion has not retrained
            measured = record_drift(storage, dataset_id)
            if measured is not None:
                run.drift.append(measured.evaluation_id)
    if run.published:
        # One event for the newest version: training always starts from the latest dataset.
        run.event_id = emit_dataset_published(
            storage, run.published[-1],
            {"new_rows": run.new_rows, "versions": run.published,
             "sources": [Path(p).name for p in files if p not in rejected]})
    else:
        log.info("no new headlines in %d file(s); dataset %s unchanged", len(files),
                 run.dataset_id or "(none)")
    if rejected:
        raise IngestError(f"{len(rejected)} file(s) could not be ingested: "
                          + "; ".join(f"{Path(p).name}: {why}" for p, why in rejected.items()))
    return run


def _run_label() -> str:
    """Which flow run this is, for the claims it writes (people read them)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return f"flow run {run.name} ({run.id})" if run else ""
