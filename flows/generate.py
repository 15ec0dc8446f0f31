"""The `generate-headlines` flow: a batch of generated headlines as one generation version.

Large jobs are split into shards of `shard_size` headlines, run as mapped Prefect tasks on the
flow's task runner (threads by default; a Dask cluster with CHARLM_TASK_RUNNER=dask, see
flows/runners.py), then joined into one version (headlines.txt + headlines.jsonl). Shard k
samples with seed `sampling.seed + k`, so a job is reproducible for a given shard_size.
The `generate-headlines` table artifact shows the first rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from pydantic import PositiveInt

from charlm.config import SampleConfig
from flows.runners import task_runner_from_env
from tasks.common import open_store
from tasks.generate import METADATA_FILE, generate_shard, job_dir, publish_generation
from tasks.report import GENERATION_KEY, MAX_TABLE_ROWS, publish_table

FLOW_NAME = "generate-headlines"
DEFAULT_SAMPLING = SampleConfig()  # frozen: safe as a shared default
DEFAULT_SHARD_SIZE = 1000


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


@dataclass
class GenerateRun:
    """What one run did (the flow's return value)."""

    generation_id: str
    model_id: str
    path: str  # headlines.txt of the generation version
    headlines: int
    truncated: int
    shards: int


@flow(name=FLOW_NAME, task_runner=task_runner_from_env(),
      description="Generate a batch of headlines from a model into a generation version.")
def generate_headlines(model: str = "champion", n: PositiveInt = 20,
                       sampling: SampleConfig = DEFAULT_SAMPLING,
                       prefixes: list[str] | None = None,
                       shard_size: PositiveInt = DEFAULT_SHARD_SIZE,
                       storage: str | None = None) -> GenerateRun:
    """Generate `n` headlines from `model` into one generation version.

    Args:
        model: model version id or alias (champion, latest).
        n: number of headlines.
        sampling: top_p, temperature, top_k, greedy, max_length, seed (as `charlm generate`).
        prefixes: start headline i with prefixes[i % len(prefixes)].
        shard_size: headlines per shard task; shard k uses seed sampling.seed + k.
        storage: artifact store root (default: $CHARLM_STORAGE or ./charlm-store).
    """
    log = get_run_logger()
    store = open_store(storage)
    model_id = store.resolve("models", model)  # once: every shard uses the same version
    prefixes = list(prefixes or [])
    sizes = plan_shards(n, shard_size)
    offsets = [sum(sizes[:k]) for k in range(len(sizes))]
    job = job_dir(storage, model_id, n, sampling, prefixes)
    log.info("generating %d headlines from model %s in %d shard(s)", n, model_id, len(sizes))
    futures = generate_shard.map(unmapped(storage), unmapped(model_id), range(len(sizes)),
                                 sizes, unmapped(sampling),
                                 [rotate(prefixes, o) for o in offsets], unmapped(str(job)))
    shard_files = futures.result()  # raises if any shard failed; the job folder stays
    outcome = publish_generation(storage, model_id, shard_files, sampling, prefixes)
    store.remove_work_dir(job)

    rows = []
    with open(Path(outcome.path).with_name(METADATA_FILE)) as f:
        for line in islice(f, MAX_TABLE_ROWS):
            r = json.loads(line)
            rows.append({"headline": r["text"], "prefix": r["prefix"], "length": r["length"],
                         "truncated": r["truncated"], "shard": r["shard"]})
    publish_table(rows, key=GENERATION_KEY,
                  description=f"generation {outcome.generation_id}: {outcome.headlines} "
                  f"headlines from model {model_id} (top_p {sampling.top_p}, temperature "
                  f"{sampling.temperature}, seed {sampling.seed})")
    return GenerateRun(outcome.generation_id, model_id, outcome.path, outcome.headlines,
                       outcome.truncated, len(sizes))
