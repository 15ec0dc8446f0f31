"""The `train-headlines` flow: train a challenger, compare it with the champion, maybe promote.

Run nightly and on every `charlm.dataset.published` event by the `train-headlines/nightly`
deployment (concurrency limit 1, so runs queue rather than train the same thing twice). A run
whose dataset the champion was already trained on does nothing, so the nightly schedule is
cheap when no headlines arrived. A crashed run resumes from its checkpoint when rerun with the
same parameters on the same dataset version (train_model keys checkpoints by a fingerprint).

Prefect UI: one log line per epoch, the `train-headlines-progress` progress artifact during
training and the `train-headlines-report` markdown artifact (metrics table, decision, samples).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from pydantic import NonNegativeInt

from charlm.config import ModelConfig, SampleConfig, TrainConfig
from tasks.champion import champion_status, should_promote
from tasks.common import open_store
from tasks.evaluate import evaluate_model
from tasks.generate import METADATA_FILE, generate_shard, job_dir, publish_generation
from tasks.promote import promote, promote_if_unset
from tasks.report import (
    TrainingProgress,
    model_row,
    publish_markdown,
    skipped_report_markdown,
    train_report_markdown,
)
from tasks.train import train_model

FLOW_NAME = "train-headlines"
# Frozen dataclasses: safe as shared defaults; equal to the `charlm train` CLI defaults.
DEFAULT_NETWORK, DEFAULT_TRAINING = ModelConfig(), TrainConfig()
Precision = Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]


@dataclass
class TrainRun:
    """What one run did (the flow's return value)."""

    action: Literal["skipped", "promoted", "kept"]
    dataset_id: str
    champion_id: str | None  # the champion after the run
    challenger_id: str | None = None
    challenger_bpc: float | None = None  # test bits/char
    champion_bpc: float | None = None  # the previous champion's test bits/char
    generation_id: str | None = None  # the sample headlines


@flow(name=FLOW_NAME, description="Train a challenger on new headlines; promote it if better.")
def train_headlines(dataset: str = "latest", network: ModelConfig = DEFAULT_NETWORK,
                    training: TrainConfig = DEFAULT_TRAINING, precision: Precision = "auto",
                    force: bool = False, samples: NonNegativeInt = 10,
                    storage: str | None = None) -> TrainRun:
    """Train on `dataset` (id or alias) unless the champion already was; then evaluate the
    challenger and the champion on the dataset's test split and promote the challenger if
    its bits/char is lower. `samples` headlines from the challenger go into the report."""
    log = get_run_logger()
    status = champion_status(storage, dataset)
    if status.up_to_date and not force:
        log.info("no new headlines: champion %s was already trained on dataset %s; nothing to "
                 "do (force=true retrains)", status.champion_id, status.dataset_id)
        publish_markdown(skipped_report_markdown(status.dataset_id, str(status.champion_id)),
                         description="train-headlines: skipped, no new headlines")
        return TrainRun("skipped", status.dataset_id, status.champion_id)

    trained = train_model(storage, status.dataset_id, network, training, precision,
                          [TrainingProgress(training)])
    challenger = evaluate_model(storage, trained.model_id, status.dataset_id, "test")
    champion = (evaluate_model(storage, status.champion_id, status.dataset_id, "test")
                if status.champion_id else None)
    champion_bpc = champion.metrics["bits_per_char"] if champion else None
    challenger_bpc = challenger.metrics["bits_per_char"]
    promoted = should_promote(challenger_bpc, champion_bpc)
    if not promoted:
        log.info("champion %s stays: test %.4f bits/char vs the challenger's %.4f",
                 status.champion_id, champion_bpc, challenger_bpc)
    elif status.champion_id is None:
        # promote_if_unset, not promote: another run may have crowned a model meanwhile.
        promoted = promote_if_unset(storage, trained.model_id)
    else:
        log.info("challenger %s beats champion %s: %.4f < %.4f test bits/char",
                 trained.model_id, status.champion_id, challenger_bpc, champion_bpc)
        promote(storage, trained.model_id)

    generation_id, headlines = None, []
    if samples:
        config = SampleConfig(seed=training.seed)
        job = job_dir(storage, trained.model_id, samples, config, [])
        shard = generate_shard(storage, trained.model_id, 0, samples, config, [], str(job))
        generated = publish_generation(storage, trained.model_id, [shard], config, [])
        open_store(storage).remove_work_dir(job)
        generation_id = generated.generation_id
        # The JSONL, not the text file: a headline may hold \r or \x0c, which line-based
        # readers take for line breaks.
        with open(Path(generated.path).with_name(METADATA_FILE)) as f:
            headlines = [json.loads(line)["text"] for line in f]

    report = train_report_markdown(
        status.dataset_id, model_row(storage, trained.model_id, challenger.metrics),
        model_row(storage, status.champion_id, champion.metrics) if champion else None,
        promoted, headlines)
    publish_markdown(report, description=f"train-headlines: challenger {trained.model_id} "
                     + ("promoted" if promoted else "not promoted"))
    champion_now = open_store(storage).aliases("models").get("champion")
    return TrainRun("promoted" if promoted else "kept", status.dataset_id, champion_now,
                    trained.model_id, challenger_bpc, champion_bpc, generation_id)
