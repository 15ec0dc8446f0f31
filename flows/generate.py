"""The `generate-headlines` flow: a batch of generated headlines as one generation version.

Runs `tasks.generate.generate_headlines` (the operation `charlm generate` runs too) with its
shards mapped over the flow's task runner (threads by default; a Dask cluster with
CHARLM_TASK_RUNNER=dask, see flows/runners.py). Shard k samples with its own seed derived
from `sampling.seed`, so a job is reproducible for a given shard_size, and each finished
shard is saved to the store: a rerun of a killed job, on any machine, draws only the shards
it did not finish. The `generate-headlines` table artifact shows the first rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, unmapped
from pydantic import PositiveInt

from charlm.config import SampleConfig
from flows.runners import task_runner_from_env
from tasks import generate
from tasks.generate import Shard, generate_shard, read_generated
from tasks.presets import GENERATE_N
from tasks.report import GENERATION_KEY, MAX_TABLE_ROWS, publish_table

FLOW_NAME = "generate-headlines"
DEFAULT_SAMPLING = SampleConfig()  # frozen: safe as a shared default
DEFAULT_SHARD_SIZE = 1000


@dataclass
class GenerateRun:
    """What one run did (the flow's return value)."""

    generation_id: str
    model_id: str
    path: str  # the plain-text headlines file of the generation version
    headlines: int
    truncated: int
    shards: int


def map_shards(storage: str | None, model_id: str, shards: list[Shard],
               sampling: SampleConfig, job: str, novel_only: bool) -> list[str]:
    """A tasks.generate.ShardRunner: every shard a mapped task on the flow's task runner."""
    futures = generate_shard.map(unmapped(storage), unmapped(model_id),
                                 [s.index for s in shards], [s.size for s in shards],
                                 unmapped(sampling), [s.prefixes for s in shards],
                                 unmapped(job), unmapped(novel_only))
    return futures.result()  # raises if any shard failed; the job folder stays


@flow(name=FLOW_NAME, task_runner=task_runner_from_env(),
      description="Generate a batch of headlines from a model into a generation version.")
def generate_headlines(model: str = "champion", n: PositiveInt = GENERATE_N,
                       sampling: SampleConfig = DEFAULT_SAMPLING,
                       prefixes: list[str] | None = None,
                       shard_size: PositiveInt = DEFAULT_SHARD_SIZE,
                       novel_only: bool = False,
                       storage: str | None = None) -> GenerateRun:
    """Generate `n` headlines from `model` into one generation version.

    Args:
        model: model version id or alias (champion, latest).
        n: number of headlines.
        sampling: top_p, temperature, top_k, greedy, max_new_chars, seed (as
            `charlm generate`).
        prefixes: start headline i with prefixes[i % len(prefixes)].
        shard_size: headlines per shard task.
        novel_only: drop verbatim copies of training headlines (and draw replacements).
        storage: artifact store root (default: $CHARLM_STORAGE or ./charlm-store).
    """
    outcome = generate.generate_headlines(storage, model, n, sampling, prefixes, novel_only,
                                          shard_size, run_shards=map_shards)
    rows = [{"headline": r["text"], "prefix": r["prefix"], "length": r["length"],
             "truncated": r["truncated"], "shard": r["shard"]}
            for r in read_generated(outcome, MAX_TABLE_ROWS)]
    publish_table(rows, key=GENERATION_KEY,
                  description=f"generation {outcome.generation_id}: {outcome.headlines} "
                  f"headlines from model {outcome.model_id} (top_p {sampling.top_p}, "
                  f"temperature {sampling.temperature}, seed {sampling.seed})")
    return GenerateRun(outcome.generation_id, outcome.model_id, outcome.path,
                       outcome.headlines, outcome.truncated, outcome.shards)
