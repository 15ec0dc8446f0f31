"""Training: a compiled step over length-bucketed batches, with resumable checkpoints.

The loop is ours rather than `Model.fit` so the loss counts real characters only
(sum of weighted cross-entropy / number of real characters), the learning rate
follows the time budget, and a killed run resumes mid-epoch from its checkpoint
(weights, optimizer slots, epoch, batch position, RNG seeds). Side effects
(progress, logging, metrics) reach the caller through `Callback`s.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from charlm.config import TrainConfig
from charlm.data import Corpus, batch_rows, to_dataset
from charlm.evaluate import LN2, headline_nats, make_scorer, metrics_from_nats

STATE_FILE = "state.json"
BEST_FILE = "best.weights.h5"
WARMUP_STEPS = 100


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


class Callback:
    """Hooks the training loop calls; override what you need."""

    def on_train_begin(self, info: dict[str, Any]) -> None: ...
    def on_batch_end(self, step: int, logs: dict[str, Any]) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_checkpoint(self, directory: Path, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch
    best_epoch: int = 0
    best_validation_bpc: float = math.inf
    stopped: str = ""  # "epochs", "early_stopping" or "time_budget"
    steps: int = 0
    characters: int = 0  # training characters processed (incl. end markers)
    seconds: float = 0.0  # training wall time, across resumed runs
    resumed_from: dict[str, int] | None = None  # {"epoch", "batch", "step"} when resumed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def learning_rate(config: TrainConfig, progress: float, step: int) -> float:
    """Warm-up then cosine decay from learning_rate to min_learning_rate over `progress` 0..1."""
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    progress = min(max(progress, 0.0), 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return warm * (config.min_learning_rate
                   + (config.learning_rate - config.min_learning_rate) * cosine)


def make_optimizer(model: keras.Model, config: TrainConfig) -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate,
                                      global_clipnorm=config.clip_norm)
    if model.dtype_policy.name.startswith("mixed_float16"):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return optimizer


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer):
    """Compiled (inputs, targets, weights) -> summed nats of the batch, after one update.

    The loss is the mean over real characters (weights 1), so padding never counts.
    """
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(inputs, targets, weights):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)  # (B, T, V)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)  # (B, T)
            total = tf.reduce_sum(nll * weights)
            loss = total / tf.reduce_sum(weights)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return total

    return train_step


def _save_checkpoint(directory: Path, model: keras.Model, optimizer, state: dict) -> None:
    """Write weights, optimizer slots and state into a fresh folder, then swap it in."""
    tmp = directory / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_weights(tmp / "model.weights.h5")
    np.savez(tmp / "optimizer.npz", *[v.numpy() for v in optimizer.variables])
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    final = directory / "checkpoint"
    old = directory / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)  # a kill before this line leaves checkpoint.old to recover from
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(directory: Path, model: keras.Model, optimizer,
                     fingerprint: str) -> dict | None:
    for name in ("checkpoint", "checkpoint.old"):
        path = directory / name
        if (path / STATE_FILE).exists():
            state = json.loads((path / STATE_FILE).read_text())
            if state.get("fingerprint") != fingerprint:
                return None  # another run's checkpoint: leave model and optimizer untouched
            model.load_weights(path / "model.weights.h5")
            with np.load(path / "optimizer.npz") as slots:
                values = [slots[f"arr_{i}"] for i in range(len(slots.files))]
            assert len(values) == len(optimizer.variables), "optimizer layout changed"
            for var, value in zip(optimizer.variables, values):
                var.assign(value)
            return state
    return None


def fit(model: keras.Model, train: Corpus, validation: Corpus, config: TrainConfig,
        callbacks: Sequence[Callback] = (), checkpoint_dir: Path | None = None,
        fingerprint: str = "") -> TrainResult:
    """Train `model` in place; on return it holds the best weights seen on validation.

    `checkpoint_dir`, when given, receives a checkpoint every `checkpoint_minutes`
    and at each epoch end; a later call with the same directory and `fingerprint`
    resumes from it. The directory is the caller's to create and remove.
    """
    if len(train) == 0:
        raise ValueError("no training headlines")
    if len(validation) == 0:
        raise ValueError("no validation headlines")
    if config.validation_limit and len(validation) > config.validation_limit:
        pick = np.random.default_rng(config.seed).choice(
            len(validation), config.validation_limit, replace=False)
        validation = validation.take(np.sort(pick))

    optimizer = make_optimizer(model, config)
    scorer = make_scorer(model)
    train_step = make_train_step(model, optimizer)

    result = TrainResult()
    epoch, skip = 0, 0
    best_weights = None
    state = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        state = _load_checkpoint(checkpoint_dir, model, optimizer, fingerprint)
        if state is not None and state.get("fingerprint") != fingerprint:
            state = None  # a checkpoint of another run: start over
    if state is not None:
        result = TrainResult(**state["result"])
        epoch, skip = state["epoch"], state["batch"]
        result.resumed_from = {"epoch": epoch, "batch": skip, "step": result.steps}
        best_path = checkpoint_dir / BEST_FILE
        if best_path.exists():
            current = model.get_weights()
            model.load_weights(best_path)
            best_weights = model.get_weights()
            model.set_weights(current)

    budget = config.max_minutes * 60.0
    per_epoch = math.ceil(len(train) / config.batch_size)
    planned = config.epochs * per_epoch
    info = {"headlines": len(train), "validation_headlines": len(validation),
            "batches_per_epoch": per_epoch, "characters_per_epoch": train.characters,
            "resumed_from": result.resumed_from}
    for cb in callbacks:
        cb.on_train_begin(info)

    def checkpoint(epoch_: int, batch_: int) -> None:
        if checkpoint_dir is None:
            return
        payload = {"epoch": epoch_, "batch": batch_, "fingerprint": fingerprint,
                   "result": result.to_dict()}
        _save_checkpoint(checkpoint_dir, model, optimizer, payload)
        for cb in callbacks:
            cb.on_checkpoint(checkpoint_dir, {"epoch": epoch_, "batch": batch_})

    start = time.monotonic() - result.seconds
    last_checkpoint = time.monotonic()
    bad_epochs = sum(1 for h in result.history if h["epoch"] > result.best_epoch)
    stopped = ""
    while epoch < config.epochs and not stopped:
        rng = np.random.default_rng([config.seed, epoch])  # same batches on resume
        rows = batch_rows(train, config.batch_size, rng)
        epoch_nats, epoch_chars, t0 = 0.0, 0, time.monotonic()
        for b, (inputs, targets, weights) in enumerate(
                to_dataset(train, rows[skip:], config.truncate_length), start=skip):
            elapsed = time.monotonic() - start
            progress = max(result.steps / planned, elapsed / budget)
            optimizer.learning_rate.assign(learning_rate(config, progress, result.steps))
            nats = float(train_step(inputs, targets, weights))
            chars = int(weights.numpy().sum())
            if not math.isfinite(nats):
                raise TrainingError(
                    f"loss became {nats} at epoch {epoch + 1}, batch {b + 1}; "
                    + ("the last good checkpoint is kept in " + str(checkpoint_dir)
                       if checkpoint_dir else "no checkpoint directory was given")
                    + "; try a lower learning_rate or clip_norm")
            epoch_nats += nats
            epoch_chars += chars
            result.steps += 1
            result.characters += chars
            logs = {"epoch": epoch + 1, "batch": b + 1, "batches": len(rows),
                    "bits_per_char": nats / chars / LN2,
                    "learning_rate": float(optimizer.learning_rate.numpy())}
            for cb in callbacks:
                cb.on_batch_end(result.steps, logs)
            if time.monotonic() - start >= budget:
                stopped = "time_budget"
                break
            if time.monotonic() - last_checkpoint >= config.checkpoint_minutes * 60:
                result.seconds = time.monotonic() - start
                checkpoint(epoch, b + 1)
                last_checkpoint = time.monotonic()
        skip = 0
        nats = headline_nats(model, validation, scorer=scorer)
        valid = metrics_from_nats(float(nats.sum()), validation.characters)["bits_per_char"]
        entry = {
            "epoch": epoch + 1,
            "train_bpc": epoch_nats / max(epoch_chars, 1) / LN2,
            "validation_bpc": valid,
            "seconds": time.monotonic() - t0,
            "elapsed": time.monotonic() - start,
            "learning_rate": float(optimizer.learning_rate.numpy()),
            "complete": stopped != "time_budget",
        }
        result.history.append(entry)
        if valid < result.best_validation_bpc:
            result.best_validation_bpc, result.best_epoch = valid, epoch + 1
            best_weights = model.get_weights()
            bad_epochs = 0
            if checkpoint_dir is not None:
                tmp = checkpoint_dir / ("tmp-" + BEST_FILE)
                model.save_weights(tmp)
                tmp.replace(checkpoint_dir / BEST_FILE)
        else:
            bad_epochs += 1
        for cb in callbacks:
            cb.on_epoch_end(epoch + 1, entry)
        epoch += 1
        if not stopped and bad_epochs >= config.patience:
            stopped = "early_stopping"
        result.seconds = time.monotonic() - start
        checkpoint(epoch, 0)
        last_checkpoint = time.monotonic()
    result.stopped = stopped or "epochs"
    result.seconds = time.monotonic() - start
    if best_weights is not None:
        model.set_weights(best_weights)
    for cb in callbacks:
        cb.on_train_end(result)
    return result

