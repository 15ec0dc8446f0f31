"""The training stage: dataset version in, model version out (resuming a crashed run)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import ModelConfig, TrainConfig, to_dict
from charlm.data import Corpus
from charlm.devices import make_strategy
from charlm.model import build_model, count_parameters, resolve_precision, save_model
from charlm.train import Callback, TensorBoardLog, fit
from storage.checkpoints import CheckpointDir
from storage.datasets import read_texts
from tasks.common import fingerprint, open_store, run_logger


class LogEpochs(Callback):
    """One log line per epoch (Keras' progress bars never reach the Prefect UI)."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter) -> None:
        self.logger = logger

    def on_train_begin(self, info: dict[str, Any]) -> None:
        resumed = info.get("resumed_from")
        self.logger.info(
            "training on %d headlines (%d characters per epoch, %d batches)%s",
            info["headlines"], info["characters_per_epoch"], info["batches_per_epoch"],
            f"; resumed from epoch {resumed['epoch'] + 1} batch {resumed['batch']}"
            if resumed else "")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.logger.info(
            "epoch %d: train %.4f bits/char, validation %.4f bits/char, %.1f s, lr %.2e",
            epoch, logs["train_bpc"], logs["validation_bpc"], logs["seconds"],
            logs["learning_rate"])


@dataclass(frozen=True)
class TrainOutcome:
    model_id: str
    dataset_id: str
    validation_bpc: float
    epochs: int
    stopped: str
    seconds: float


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(storage: str | None, dataset: str = "latest",
                model_config: ModelConfig = ModelConfig(),
                train_config: TrainConfig = TrainConfig(),
                precision: str = "auto",
                callbacks: Sequence[Callback] = (), devices: int | str = 1) -> TrainOutcome:
    """Train a model on `dataset` (id or alias) and publish it as a model version.

    `devices`: 1, a count of GPUs (logical CPUs on a machine without GPUs) or "all"; see
    charlm.devices. A crashed run resumes from its checkpoint on any device count.
    """
    log = run_logger()
    store = open_store(storage)
    dataset_id = store.resolve("datasets", dataset)
    dataset_dir = store.path("datasets", dataset_id)  # verifies checksums first
    train = Corpus.from_texts(read_texts(dataset_dir, "train"))
    validation = Corpus.from_texts(read_texts(dataset_dir, "validation"))
    strategy = make_strategy(devices)
    dtype = resolve_precision(precision)
    run_key = fingerprint(dataset_id, to_dict(model_config), to_dict(train_config), dtype)
    checkpoints = store.work_dir(f"train-{run_key}")
    log.info("dataset %s: %d train / %d validation headlines; %s %dx%d, %s on %d device(s), "
             "checkpoints in %s", dataset_id, len(train), len(validation), model_config.cell,
             model_config.hidden, model_config.depth, dtype, strategy.num_replicas_in_sync,
             checkpoints)
    with strategy.scope():
        model = build_model(model_config, precision=dtype)
    logdir = checkpoints / "tensorboard"  # kept across a resume, published with the model
    result = fit(model, train, validation, train_config,
                 callbacks=[LogEpochs(log), TensorBoardLog(logdir), *callbacks],
                 checkpoint=CheckpointDir(checkpoints), fingerprint=run_key, strategy=strategy)
    replicas = strategy.num_replicas_in_sync
    params = {"model": to_dict(model_config), "train": to_dict(train_config), "precision": dtype,
              "replicas": replicas}
    with store.publish("models", parents={"datasets": [dataset_id]}, params=params,
                       seed=model_config.seed) as staging:
        save_model(model, model_config, staging.path,
                   extra={"train": to_dict(train_config), "dataset": dataset_id,
                          "precision": dtype, "replicas": replicas,
                          "result": result.to_dict()})
        shutil.copytree(logdir, staging.path / "tensorboard")
        staging.summary.update(
            validation_bpc=result.best_validation_bpc, best_epoch=result.best_epoch,
            epochs=len(result.history), stopped=result.stopped, seconds=result.seconds,
            steps=result.steps, characters=result.characters,
            parameters=count_parameters(model), history=result.history)
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("published model %s (validation %.4f bits/char, %s after %d epochs)",
             staging.id, result.best_validation_bpc, result.stopped, len(result.history))
    return TrainOutcome(staging.id, dataset_id, result.best_validation_bpc,
                        len(result.history), result.stopped, result.seconds)
