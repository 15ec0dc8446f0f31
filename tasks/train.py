"""The training stage: dataset version in, model version out (resuming a crashed run).

A run's checkpoints live in a work directory keyed by a fingerprint of the dataset, the
configs and the precision, so rerunning the same command after a crash resumes it.
Progress, logs and TensorBoard curves come from the callbacks in tasks.callbacks.

Which recurrent path trains the model (charlm.kernels.status: the fused CPU kernels, or
Keras' loops and why) is logged before the first epoch, as a warning when the kernels would
run here but cannot (in a Prefect run, its run log), and recorded with the model: in its
config file and its manifest's summary, where the training report and `charlm status` read
it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm import kernels
from charlm.config import ModelConfig, TrainConfig, to_dict
from charlm.data import Corpus
from charlm.devices import make_strategy
from charlm.model import build_model, count_parameters, resolve_precision, save_model
from charlm.train import Callback, fit
from storage import Store
from storage.checkpoints import CheckpointDir
from storage.datasets import read_texts
from storage.layout import ModelFiles, TrainingWorkFiles, training_work_name
from tasks.callbacks import LogEpochs, TensorBoardLog
from tasks.common import fingerprint, open_store, run_logger
from tasks.warm import read_network, shape_conflicts

# Why training stopped, as the log says it ("... after N epochs: <why>").
STOPPED = {"epochs": "all planned", "early_stopping": "stopped early, validation stopped improving",
           "time_budget": "the time budget ran out"}


@dataclass(frozen=True)
class TrainOutcome:
    model_id: str
    dataset_id: str
    validation_bpc: float
    epochs: int
    stopped: str  # "epochs", "early_stopping" or "time_budget"
    seconds: float
    started_from: str | None = None  # the model whose weights it started from (warm start)
    recurrent: kernels.KernelStatus | None = None  # the recurrent path that trained it


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(storage: str | None, dataset: str = "latest",
                network: ModelConfig = ModelConfig(),
                training: TrainConfig = TrainConfig(),
                precision: str = "auto",
                callbacks: Sequence[Callback] = (), devices: int | str = 1,
                start_from: str | None = None) -> TrainOutcome:
    """Train a model on `dataset` (id or alias) and publish it as a model version.

    `devices`: 1, a count of GPUs (logical CPUs on a machine without GPUs) or "all"; see
    charlm.devices. A crashed run resumes from its checkpoint on any device count.
    `start_from`: a model (id or alias) whose weights the run starts from (a warm start,
    tasks.warm): `network` must have its shape, and the peak learning rate is
    `training.warm_learning_rate`; the new model's parents["models"] names it.
    """
    store = open_store(storage)
    dataset_id = store.resolve("datasets", dataset)
    start = None
    if start_from is not None:
        start, start_network = read_network(storage, start_from)  # checked before training
        conflicts = shape_conflicts(start_network, to_dict(network))
        if conflicts:
            raise ValueError(f"cannot start from model {start_from} ({start}): "
                             + "; ".join(conflicts))
        training = training.warm()
    # gc keeps what a run builds on for as long as it runs (hours), not only what is aliased
    # or newest: the model's publish would otherwise be refused at the end.
    with ExitStack() as pins:
        holder = f"train-model pid {os.getpid()}"
        pins.enter_context(store.pinned("datasets", dataset_id, holder))
        if start:
            pins.enter_context(store.pinned("models", start, holder))
        return _train(store, dataset_id, network, training, precision, callbacks, devices,
                      start)


def _train(store: Store, dataset_id: str, network: ModelConfig, training: TrainConfig,
           precision: str, callbacks: Sequence[Callback], devices: int | str,
           start: str | None) -> TrainOutcome:
    log = run_logger()
    dataset_dir = store.path("datasets", dataset_id)  # verifies checksums first
    texts = read_texts(dataset_dir, "train")
    if training.recent_repeats > 1:  # recency weighting (TrainConfig): the recent rows again
        recent = read_texts(dataset_dir, "train", days=training.recent_days)
        texts += recent * (training.recent_repeats - 1)
        log.info("recency weighting: the %d training headlines of the newest %d days seen %d "
                 "times an epoch", len(recent), training.recent_days, training.recent_repeats)
    train = Corpus.from_texts(texts)
    validation = Corpus.from_texts(read_texts(dataset_dir, "validation"))
    strategy = make_strategy(devices)
    dtype = resolve_precision(precision)
    # A warm run is another run than a cold one on the same configs: its own checkpoints.
    run_key = fingerprint(dataset_id, to_dict(network), to_dict(training), dtype,
                          *([start] if start else []))
    work = store.work_dir(training_work_name(run_key))
    log.info("dataset %s: %d train / %d validation headlines; %s %dx%d, %s on %d device(s), "
             "%s, checkpoints in %s", dataset_id, len(train), len(validation), network.cell,
             network.hidden, network.depth, dtype, strategy.num_replicas_in_sync,
             f"warm from model {start} (peak learning rate {training.learning_rate})"
             if start else "from scratch", work)
    # Before the model is built: building it is what would otherwise find the kernels
    # missing, and the reason must reach this run's log, not only the process's stderr.
    path = kernels.status(dtype, network.cell, network.gru_variant)
    if path.fallback:
        log.warning("recurrent path: %s; `charlm kernels` says more", path.detail())
    else:
        log.info("recurrent path: %s", path.detail())
    with strategy.scope():
        model = build_model(network, precision=dtype)
        if start:
            # A resumed run overwrites these with its checkpoint's weights in fit.
            model.load_weights(ModelFiles.at(store.path("models", start)).weights)
    tensorboard = TrainingWorkFiles.at(work).tensorboard  # kept across a resume
    result = fit(model, train, validation, training,
                 callbacks=[LogEpochs(log), TensorBoardLog(tensorboard), *callbacks],
                 checkpoint=CheckpointDir(work, on_save=lambda: store.save_work_dir(work)),
                 fingerprint=run_key, strategy=strategy)
    replicas = strategy.num_replicas_in_sync
    params = {"model": to_dict(network), "train": to_dict(training), "precision": dtype,
              "replicas": replicas, "started_from": start}
    parents = {"datasets": [dataset_id], **({"models": [start]} if start else {})}
    with store.publish("models", parents=parents, params=params,
                       seed=network.seed) as staging:
        files = ModelFiles.at(staging.path)
        save_model(model, network, files,
                   extra={"train": to_dict(training), "dataset": dataset_id,
                          "precision": dtype, "replicas": replicas, "started_from": start,
                          "recurrent": path.to_dict(), "result": result.to_dict()})
        staging.copy_in(tensorboard, files.tensorboard.name)
        staging.summary.update(
            validation_bpc=result.best_validation_bpc, best_epoch=result.best_epoch,
            epochs=len(result.history), stopped=result.stopped, seconds=result.seconds,
            steps=result.steps, characters=result.characters, started_from=start,
            parameters=count_parameters(model), recurrent=path.to_dict(),
            history=result.history)
    store.remove_work_dir(work)
    log.info("published model %s (validation %.4f bits/char after %d epochs: %s)",
             staging.id, result.best_validation_bpc, len(result.history),
             STOPPED.get(result.stopped, result.stopped))
    return TrainOutcome(staging.id, dataset_id, result.best_validation_bpc,
                        len(result.history), result.stopped, result.seconds, start, path)
