"""Every file and folder name the project writes: the one home of the on-disk layout.

Callers never join names themselves: a version's files come from a files object built for
its directory, e.g. ``ModelFiles.at(store.path("models", "champion")).weights`` (a Path).
The store's own bookkeeping names (manifest, aliases, work directories, the inbox) are
constants here too.

    <root>/datasets/<id>/      headlines.parquet, quarantine.parquet                (DatasetFiles)
    <root>/models/<id>/        config.json, vocabulary.json, model.weights.h5,
                               tensorboard/                                           (ModelFiles)
    <root>/evaluations/<id>/   metrics.json, report.md, learning_curve.png       (EvaluationFiles)
                               or comparison.md, comparison.json, comparison.png (ComparisonFiles)
                               or trend.md, trend.json, trend.png                (DriftTrendFiles)
    <root>/generations/<id>/   headlines.txt, headlines.jsonl                    (GenerationFiles)
    <root>/.work/train-<key>/  tensorboard/, checkpoint/ (arrays.npz, state.json),
                               best.npz                       (TrainingWorkFiles, CheckpointFiles)
    <root>/.work/generate-<key>/shard-00000.jsonl (+ .json counts, .tmp)              (ShardFiles)
    <root>/inbox/              <name>.csv waiting, .claims/<name>, processed/<dataset id>/,
                               processed/{unchanged,rejected}/           (protocol: storage.inbox)
    <root>/feeds/              items.jsonl, validators.json, published.json, .lock     (FeedFiles)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ALIASES_DIR", "ALIAS_HISTORY_FILE", "DEFAULT_ROOT_NAME", "MANIFEST", "WORK_DIR",
           "CheckpointFiles", "ComparisonFiles", "DatasetFiles", "DriftTrendFiles",
           "EvaluationFiles", "FeedFiles", "GenerationFiles", "ModelFiles", "ShardFiles",
           "TrainingWorkFiles", "demo_corpus_name", "generation_work_name", "inbox_archive_key",
           "inbox_archive_prefix", "inbox_claim_key", "inbox_key", "training_work_name"]

DEFAULT_ROOT_NAME = "charlm-store"  # the store root when $CHARLM_STORAGE is not set
MANIFEST = "manifest.json"  # in every version; written last
ALIASES_DIR = ".aliases"  # before the commit log (storage.log): one file per alias, per kind
ALIAS_HISTORY_FILE = ".alias-history.jsonl"  # and the alias history, per kind
WORK_DIR = ".work"  # <root>/.work/<name>/: scratch space of resumable jobs
INBOX_DIR = "inbox"  # keys inbox/<name>.csv: CSVs waiting for the ingest flow
CLAIMS_DIR = ".claims"  # inbox/.claims/<name>: a run's claim on a waiting CSV
PROCESSED_DIR = "processed"  # inbox/processed/<folder>/<name>: archived CSVs
UNCHANGED_DIR = "unchanged"  # the archive folder of CSVs that held no new row
REJECTED_DIR = "rejected"  # the archive folder of CSVs that could not be read at all
FEEDS_DIR = "feeds"

F = TypeVar("F", bound="_Files")


def _file(name: str) -> Any:
    """A files-object field: the Path of `name` inside the directory given to `at`."""
    return field(metadata={"name": name})


class _Files:
    """Base of the files objects: `at(directory)` fills every field with directory / name."""

    @classmethod
    def at(cls: type[F], directory: str | Path) -> F:
        base = Path(directory)
        return cls(**{f.name: base / f.metadata["name"] for f in fields(cls)})  # type: ignore

    @classmethod
    def names(cls) -> list[str]:
        """The file and folder names, in field order."""
        return [f.metadata["name"] for f in fields(cls)]  # type: ignore[arg-type]


@dataclass(frozen=True)
class DatasetFiles(_Files):
    """A dataset version (format: storage.datasets)."""

    headlines: Path = _file("headlines.parquet")  # every clean headline so far
    quarantine: Path = _file("quarantine.parquet")  # rows this ingestion rejected


@dataclass(frozen=True)
class ModelFiles(_Files):
    """A model version: what charlm.model.save_model writes, plus the training curves."""

    config: Path = _file("config.json")
    vocabulary: Path = _file("vocabulary.json")
    weights: Path = _file("model.weights.h5")
    tensorboard: Path = _file("tensorboard")  # a folder: `tensorboard --logdir` on it


@dataclass(frozen=True)
class EvaluationFiles(_Files):
    """An evaluation version of one model on one split."""

    metrics: Path = _file("metrics.json")
    report: Path = _file("report.md")
    learning_curve: Path = _file("learning_curve.png")  # linked from report.md by name


@dataclass(frozen=True)
class ComparisonFiles(_Files):
    """An evaluation version comparing architectures."""

    table: Path = _file("comparison.md")
    data: Path = _file("comparison.json")
    plot: Path = _file("comparison.png")  # linked from comparison.md by name


@dataclass(frozen=True)
class DriftTrendFiles(_Files):
    """An evaluation version holding the champion's drift over dataset versions."""

    table: Path = _file("trend.md")
    data: Path = _file("trend.json")  # one object per point of the plot
    plot: Path = _file("trend.png")  # linked from trend.md by name


@dataclass(frozen=True)
class GenerationFiles(_Files):
    """A generation version: the same headlines twice."""

    lines: Path = _file("headlines.txt")  # one headline per line
    records: Path = _file("headlines.jsonl")  # one JSON object per headline, with metadata


@dataclass(frozen=True)
class TrainingWorkFiles(_Files):
    """The work directory of one training run (kept across a resume; storage.checkpoints)."""

    tensorboard: Path = _file("tensorboard")  # published with the model
    checkpoint: Path = _file("checkpoint")  # the newest whole checkpoint (CheckpointFiles)
    previous_checkpoint: Path = _file("checkpoint.old")  # while a new one replaces it
    incoming_checkpoint: Path = _file("checkpoint.tmp")  # being written
    best: Path = _file("best.npz")  # the arrays of the best weights so far


@dataclass(frozen=True)
class CheckpointFiles(_Files):
    """One checkpoint folder (TrainingWorkFiles.checkpoint and its siblings)."""

    arrays: Path = _file("arrays.npz")  # every array the trainer handed over, in order
    state: Path = _file("state.json")  # the trainer's JSON-able state


@dataclass(frozen=True)
class ShardFiles:
    """The files of generation shard `index` in a generation work directory."""

    records: Path  # shard-00000.jsonl, complete
    partial: Path  # shard-00000.tmp, being written
    counts: Path  # shard-00000.json: {"dropped_copies": n}

    @classmethod
    def at(cls, directory: str | Path, index: int) -> ShardFiles:
        return cls.of(Path(directory) / f"shard-{index:05d}.jsonl")

    @classmethod
    def of(cls, records: str | Path) -> ShardFiles:
        """The files of the shard whose complete records file is `records`."""
        stem = Path(records).with_suffix("")
        return cls(*(stem.with_suffix(suffix) for suffix in (".jsonl", ".tmp", ".json")))


@dataclass(frozen=True)
class FeedFiles(_Files):
    """`<root>/feeds`: the state of the live feed sources (format: storage.feeds)."""

    items: Path = _file("items.jsonl")  # append-only: every accepted feed item, in order
    validators: Path = _file("validators.json")  # ETag / Last-Modified per feed URL
    published: Path = _file("published.json")  # the last item already in a dataset version
    lock: Path = _file(".lock")  # held while the buffer or the validators change

    @classmethod
    def of(cls, root: str | Path) -> FeedFiles:
        """The feed files of the store at `root`."""
        return cls.at(Path(root) / FEEDS_DIR)


def inbox_key(name: str) -> str:
    """The key of inbox file `name` (a directory store's ``<root>/inbox/<name>``)."""
    return f"{INBOX_DIR}/{name}"


def inbox_claim_key(name: str) -> str:
    """The key of the claim object on inbox file `name` (storage.inbox)."""
    return f"{INBOX_DIR}/{CLAIMS_DIR}/{name}"


def inbox_archive_prefix(folder: str | None = None) -> str:
    """The prefix of archived inbox files (in archive folder `folder`, when given)."""
    return f"{INBOX_DIR}/{PROCESSED_DIR}/" + (f"{folder}/" if folder else "")


def inbox_archive_key(folder: str, name: str) -> str:
    """Where inbox file `name` is archived in `folder` (dataset id, UNCHANGED_DIR, REJECTED_DIR)."""
    return inbox_archive_prefix(folder) + name


def training_work_name(run_key: str) -> str:
    """The work directory name of the training run with fingerprint `run_key`."""
    return f"train-{run_key}"


def generation_work_name(job_key: str) -> str:
    """The work directory name of the generation job with fingerprint `job_key`."""
    return f"generate-{job_key}"


def demo_corpus_name(headlines: int, seed: int) -> str:
    """The inbox file name of the embedded demo corpus."""
    return f"demo-headlines-{headlines}-seed{seed}.csv"
