"""Generation: headlines from a model, in shards, published as one generation version.

`generate_headlines` is the one generation operation: the command line, the demo, the
training flow's sample headlines and the `generate-headlines` flow all call it. A job is
split into shards (`plan_shards`); each shard is the `generate-shard` task writing a JSONL
file into the job's work directory, and `publish-generation` joins them into one version
(storage.layout.GenerationFiles: one text file, one JSONL file with metadata). Shards run
one after the other by default; the flow passes `run_shards` to map them over its task
runner (threads or Dask). Shard k samples with seed `sampling.seed + k * SHARD_SEED_STRIDE`,
so a job is reproducible for a given shard size.

A killed job resumes: its work directory is named by the job's fingerprint, every finished
shard is saved to the store (`Store.save_work_dir`: on an object store the folder is
uploaded, by compare-and-swap, after each shard) and a rerun, on this machine or any other,
keeps the shards it finds finished and draws only the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import SampleConfig, to_dict
from charlm.model import load_model
from charlm.quality import filter_novel
from charlm.sample import generate
from storage.layout import GenerationFiles, ShardFiles, generation_work_name
from tasks.common import (
    fingerprint,
    model_files,
    open_store,
    run_logger,
    run_task,
    training_index,
)

MAX_ROUNDS = 20  # novel_only: draw again at most this often to replace dropped copies
SHARD_SEED_STRIDE = 1_000_003  # shard s, round r draws with seed + s * stride + r


@dataclass(frozen=True)
class GenerationOutcome:
    generation_id: str
    model_id: str
    path: str  # the plain-text headlines file (one per line)
    headlines: int
    truncated: int
    dropped_copies: int  # verbatim training headlines filtered out (novel_only)
    shards: int = 1


@dataclass(frozen=True)
class Shard:
    """One shard of a generation job."""

    index: int
    size: int  # headlines
    prefixes: list[str]  # rotated so row i of the shard gets the job's prefix for its row


# run_shards(storage, model_id, shards, sampling, job, novel_only) -> the shards' files
ShardRunner = Callable[[str | None, str, list[Shard], SampleConfig, str, bool], list[str]]


def plan_shards(n: int, shard_size: int) -> list[int]:
    """Sizes of the shards of an `n`-headline job: as even as possible, none over shard_size."""
    if n < 1 or shard_size < 1:
        raise ValueError(f"n and shard_size must be >= 1, got {n} and {shard_size}")
    count = -(-n // shard_size)
    base, extra = divmod(n, count)
    return [base + (1 if k < extra else 0) for k in range(count)]


def rotate(prefixes: list[str], offset: int) -> list[str]:
    """`prefixes` starting at index offset (mod len): a shard starting at global row `offset`
    then gives row i prefix prefixes[i % len], exactly as one unsharded job would."""
    if not prefixes:
        return []
    k = offset % len(prefixes)
    return prefixes[k:] + prefixes[:k]


@task(name="generate-shard", cache_policy=NO_CACHE)
def generate_shard(storage: str | None, model_id: str, shard: int, n: int,
                   sampling: SampleConfig, prefixes: list[str], job: str,
                   novel_only: bool = False) -> str:
    """Generate `n` headlines for one shard into a JSONL file; returns its path.

    With novel_only, verbatim copies of training headlines are dropped and replaced by
    further draws (their count goes into the shard's counts file). A shard an earlier run
    of the job finished (on any machine: each finished shard is saved to the store) is
    kept, not drawn again: its seed makes it the same headlines anyway.
    """
    files = ShardFiles.at(job, shard)
    if files.records.exists() and files.counts.exists():
        run_logger().info("shard %d: finished by an earlier run of this job, kept", shard)
        return str(files.records)
    net, _ = load_model(model_files(storage, model_id))
    index = training_index(storage, model_id) if novel_only else None
    rows: list[dict] = []
    dropped = 0
    for round_ in range(MAX_ROUNDS if novel_only else 1):
        seed = sampling.seed + shard * SHARD_SEED_STRIDE + round_
        result = generate(net, n - len(rows),
                          SampleConfig(**{**to_dict(sampling), "seed": seed}), prefixes or None)
        texts, cuts = result.texts, result.truncated
        if index is not None:
            kept, gone = filter_novel(texts, index)
            dropped += gone
            keep = set(kept)
            pairs = [(t, c) for t, c in zip(texts, cuts) if t in keep]
            texts, cuts = [t for t, _ in pairs], [c for _, c in pairs]
        for text, cut in zip(texts, cuts):
            i = len(rows)
            rows.append({"shard": shard, "index": i, "text": text,
                         "prefix": prefixes[i % len(prefixes)] if prefixes else "",
                         "length": len(text), "truncated": bool(cut), "seed": seed})
        if len(rows) >= n:
            break
    files.partial.write_text("".join(json.dumps(r) + "\n" for r in rows))
    files.counts.write_text(json.dumps({"dropped_copies": dropped}))
    files.partial.replace(files.records)  # the records file appears whole, counts before it
    # An object store keeps the work directory as one object: uploaded after every shard,
    # so a job killed on one machine resumes its finished shards on any other.
    open_store(storage).save_work_dir(job)
    return str(files.records)


@task(name="publish-generation", cache_policy=NO_CACHE)
def publish_generation(storage: str | None, model_id: str, shard_files: list[str],
                       sampling: SampleConfig, prefixes: list[str]) -> GenerationOutcome:
    """Join shard files into one generation version."""
    store = open_store(storage)
    rows = []
    dropped = 0
    for path in shard_files:
        with open(path) as f:
            rows.extend(json.loads(line) for line in f)
        counts = ShardFiles.of(path).counts
        if counts.exists():
            dropped += json.loads(counts.read_text())["dropped_copies"]
    params = {"sample": to_dict(sampling), "n": len(rows), "prefixes": prefixes,
              "shards": len(shard_files)}
    with store.publish("generations", parents={"models": [model_id]}, params=params,
                       seed=sampling.seed) as staging:
        out = GenerationFiles.at(staging.path)
        out.lines.write_text("".join(r["text"] + "\n" for r in rows))
        out.records.write_text("".join(json.dumps(r) + "\n" for r in rows))
        truncated = sum(r["truncated"] for r in rows)
        staging.summary.update(headlines=len(rows), truncated=truncated, model=model_id,
                               dropped_copies=dropped)
    path = GenerationFiles.at(store.path("generations", staging.id, verify=False)).lines
    run_logger().info("published generation %s: %d headlines from model %s",
                      staging.id, len(rows), model_id)
    return GenerationOutcome(staging.id, model_id, str(path), len(rows), truncated, dropped,
                             len(shard_files))


def run_shards_in_turn(storage: str | None, model_id: str, shards: list[Shard],
                       sampling: SampleConfig, job: str, novel_only: bool) -> list[str]:
    """The default ShardRunner: one shard after the other, in this process."""
    return [run_task(generate_shard, storage, model_id, s.index, s.size, sampling,
                     s.prefixes, job, novel_only) for s in shards]


def generate_headlines(storage: str | None, model: str, n: int, sampling: SampleConfig,
                       prefixes: list[str] | None = None, novel_only: bool = False,
                       shard_size: int | None = None,
                       run_shards: ShardRunner = run_shards_in_turn) -> GenerationOutcome:
    """Generate `n` headlines from `model` (id or alias) into one generation version.

    Headline i starts with prefixes[i % len(prefixes)]; `shard_size` (default: all in one)
    caps the headlines per shard; a rerun of a killed job (same model, n, sampling,
    prefixes, novel_only, shard_size) keeps the shards it finished, on any machine.
    """
    if n < 1:
        raise ValueError(f"number of headlines must be >= 1, got {n}")
    store = open_store(storage)
    model_id = store.resolve("models", model)  # once: every shard uses the same version
    prefixes = list(prefixes or [])
    sizes = plan_shards(n, shard_size or n)
    offsets = [sum(sizes[:k]) for k in range(len(sizes))]
    shards = [Shard(k, size, rotate(prefixes, offset))
              for k, (size, offset) in enumerate(zip(sizes, offsets))]
    job = store.work_dir(generation_work_name(
        fingerprint(model_id, n, to_dict(sampling), prefixes, novel_only, shard_size)))
    run_logger().info("generating %d headlines from model %s in %d shard(s)", n, model_id,
                      len(shards))
    shard_files = run_shards(storage, model_id, shards, sampling, str(job), novel_only)
    outcome = run_task(publish_generation, storage, model_id, shard_files, sampling, prefixes)
    store.remove_work_dir(job)
    return outcome


def read_generated(outcome: GenerationOutcome, limit: int | None = None) -> list[dict]:
    """The first `limit` (default: all) records of a published generation: text, prefix,
    length, truncated, shard, index, seed. Read from the JSONL file, not the text file: a
    headline may hold \\r or \\x0c, which line-based readers take for line breaks."""
    with open(GenerationFiles.at(Path(outcome.path).parent).records) as f:
        return [json.loads(line) for line in islice(f, limit)]
