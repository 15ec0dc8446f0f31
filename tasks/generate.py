"""The generation stage: shards of headlines from a model, published as one generation version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import SampleConfig, to_dict
from charlm.model import load_model
from charlm.sample import generate
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


def job_dir(storage: str | None, model_id: str, n: int, config: SampleConfig,
            prefixes: list[str]) -> Path:
    return open_store(storage).work_dir(
        "generate-" + fingerprint(model_id, n, to_dict(config), prefixes))


@task(name="generate-shard", cache_policy=NO_CACHE)
def generate_shard(storage: str | None, model_id: str, shard: int, n: int,
                   config: SampleConfig, prefixes: list[str], job: str) -> str:
    """Generate `n` headlines for one shard (seed offset by shard) into a JSONL file; its path."""
    store = open_store(storage)
    net, _ = load_model(store.path("models", model_id))
    shard_config = SampleConfig(**{**to_dict(config), "seed": config.seed + shard})
    result = generate(net, n, shard_config, prefixes or None)
    out = Path(job) / f"shard-{shard:05d}.jsonl"
    tmp = out.with_suffix(".tmp")
    with tmp.open("w") as f:
        for i, (text, cut) in enumerate(zip(result.texts, result.truncated)):
            prefix = prefixes[i % len(prefixes)] if prefixes else ""
            f.write(json.dumps({"shard": shard, "index": i, "text": text, "prefix": prefix,
                                "length": len(text), "truncated": bool(cut),
                                "seed": shard_config.seed}) + "\n")
    tmp.replace(out)
    return str(out)


@task(name="publish-generation", cache_policy=NO_CACHE)
def publish_generation(storage: str | None, model_id: str, shard_files: list[str],
                       config: SampleConfig, prefixes: list[str]) -> GenerationOutcome:
    """Join shard files into one generation version: headlines.txt + headlines.jsonl."""
    store = open_store(storage)
    rows = []
    for path in shard_files:
        with open(path) as f:
            rows.extend(json.loads(line) for line in f)
    params = {"sample": to_dict(config), "n": len(rows), "prefixes": prefixes,
              "shards": len(shard_files)}
    with store.publish("generations", parents={"models": [model_id]}, params=params,
                       seed=config.seed) as staging:
        (staging.path / HEADLINES_FILE).write_text("".join(r["text"] + "\n" for r in rows))
        (staging.path / METADATA_FILE).write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
        truncated = sum(r["truncated"] for r in rows)
        staging.summary.update(headlines=len(rows), truncated=truncated, model=model_id)
    path = store.path("generations", staging.id, verify=False) / HEADLINES_FILE
    run_logger().info("published generation %s: %d headlines from model %s",
                      staging.id, len(rows), model_id)
    return GenerationOutcome(staging.id, model_id, str(path), len(rows), truncated)


def generate_headlines(storage: str | None, model: str, n: int, config: SampleConfig,
                       prefixes: list[str] | None = None) -> GenerationOutcome:
    """Unsharded generation for the CLI: one shard, then publish."""
    if n < 1:
        raise ValueError(f"number of headlines must be >= 1, got {n}")
    store = open_store(storage)
    model_id = store.resolve("models", model)
    prefixes = list(prefixes or [])
    job = job_dir(storage, model_id, n, config, prefixes)
    shard = generate_shard.fn(storage, model_id, 0, n, config, prefixes, str(job))
    outcome = publish_generation.fn(storage, model_id, [shard], config, prefixes)
    store.remove_work_dir(job)
    return outcome
