"""The generation stage: shards of headlines from a model, published as one generation version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import SampleConfig, to_dict
from charlm.model import load_model, read_config
from charlm.quality import TrainingIndex, filter_novel
from charlm.sample import generate
from storage.datasets import read_texts
from tasks.common import fingerprint, open_store, run_logger

HEADLINES_FILE = "headlines.txt"
METADATA_FILE = "headlines.jsonl"


@dataclass(frozen=True)
class GenerationOutcome:
    generation_id: str
    model_id: str
    path: str  # the plain headlines file
    headlines: int
    truncated: int
    dropped_copies: int  # verbatim training headlines filtered out (novel_only)


def job_dir(storage: str | None, model_id: str, n: int, config: SampleConfig,
            prefixes: list[str], novel_only: bool = False) -> Path:
    return open_store(storage).work_dir(
        "generate-" + fingerprint(model_id, n, to_dict(config), prefixes, novel_only))


MAX_ROUNDS = 20  # novel_only: draw again at most this often to replace dropped copies
SHARD_SEED_STRIDE = 1_000_003  # shard s, round r draws with seed + s * stride + r


def training_index(storage: str | None, model_id: str) -> TrainingIndex:
    """The training headlines of the dataset `model_id` was trained on."""
    store = open_store(storage)
    dataset = read_config(store.path("models", model_id))[1].get("dataset")
    if dataset is None:
        raise ValueError(f"model {model_id} records no training dataset (imported?); "
                         "novel-only generation needs one")
    return TrainingIndex.from_texts(read_texts(store.path("datasets", dataset), "train"))


@task(name="generate-shard", cache_policy=NO_CACHE)
def generate_shard(storage: str | None, model_id: str, shard: int, n: int,
                   config: SampleConfig, prefixes: list[str], job: str,
                   novel_only: bool = False) -> str:
    """Generate `n` headlines for one shard into a JSONL file; returns its path.

    With novel_only, verbatim copies of training headlines are dropped and replaced by
    further draws (their count goes into the shard's .json sidecar).
    """
    store = open_store(storage)
    net, _ = load_model(store.path("models", model_id))
    index = training_index(storage, model_id) if novel_only else None
    rows: list[dict] = []
    dropped = 0
    for round_ in range(MAX_ROUNDS if novel_only else 1):
        seed = config.seed + shard * SHARD_SEED_STRIDE + round_
        result = generate(net, n - len(rows), SampleConfig(**{**to_dict(config), "seed": seed}),
                          prefixes or None)
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
    out = Path(job) / f"shard-{shard:05d}.jsonl"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out.with_suffix(".json").write_text(json.dumps({"dropped_copies": dropped}))
    tmp.replace(out)
    return str(out)


@task(name="publish-generation", cache_policy=NO_CACHE)
def publish_generation(storage: str | None, model_id: str, shard_files: list[str],
                       config: SampleConfig, prefixes: list[str]) -> GenerationOutcome:
    """Join shard files into one generation version: headlines.txt + headlines.jsonl."""
    store = open_store(storage)
    rows = []
    dropped = 0
    for path in shard_files:
        with open(path) as f:
            rows.extend(json.loads(line) for line in f)
        sidecar = Path(path).with_suffix(".json")
        if sidecar.exists():
            dropped += json.loads(sidecar.read_text())["dropped_copies"]
    params = {"sample": to_dict(config), "n": len(rows), "prefixes": prefixes,
              "shards": len(shard_files)}
    with store.publish("generations", parents={"models": [model_id]}, params=params,
                       seed=config.seed) as staging:
        (staging.path / HEADLINES_FILE).write_text("".join(r["text"] + "\n" for r in rows))
        (staging.path / METADATA_FILE).write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
        truncated = sum(r["truncated"] for r in rows)
        staging.summary.update(headlines=len(rows), truncated=truncated, model=model_id,
                               dropped_copies=dropped)
    path = store.path("generations", staging.id, verify=False) / HEADLINES_FILE
    run_logger().info("published generation %s: %d headlines from model %s",
                      staging.id, len(rows), model_id)
    return GenerationOutcome(staging.id, model_id, str(path), len(rows), truncated, dropped)


def generate_headlines(storage: str | None, model: str, n: int, config: SampleConfig,
                       prefixes: list[str] | None = None,
                       novel_only: bool = False) -> GenerationOutcome:
    """Unsharded generation for the CLI: one shard, then publish."""
    if n < 1:
        raise ValueError(f"number of headlines must be >= 1, got {n}")
    store = open_store(storage)
    model_id = store.resolve("models", model)
    prefixes = list(prefixes or [])
    job = job_dir(storage, model_id, n, config, prefixes, novel_only)
    shard = generate_shard.fn(storage, model_id, 0, n, config, prefixes, str(job), novel_only)
    outcome = publish_generation.fn(storage, model_id, [shard], config, prefixes)
    store.remove_work_dir(job)
    return outcome
