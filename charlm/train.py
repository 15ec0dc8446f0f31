"""Training: compiled steps over length-bucketed batches, on one or several devices, resumable.

The loop is ours rather than `Model.fit` so the loss counts real characters only (summed
weighted cross-entropy / real characters of the whole batch), the learning rate follows the
time budget exactly (computed in the graph at every step), and a killed run resumes mid-epoch
from its checkpoint (every variable, optimizer slots and RNG states included).

What runs where: tf.data streams each batch's row ids; a compiled call runs
`TrainConfig.steps_per_call` steps (by default as many as take CALL_SECONDS), each cutting
its batch from the corpus on the device (charlm.data.assemble_batch), updating the weights
and adding the batch's summed loss and character count to device counters. The host reads
the counters back every `report_every` steps or REPORT_SECONDS (progress callbacks, the
NaN/inf check), so it never waits on the device per step. Under a MirroredStrategy each
replica takes rows r::replicas of every batch; gradients are summed across replicas before
clipping, so N devices train like one.

Side effects reach the caller through `Callback`s; checkpoints are written through a
`Checkpoint` the caller provides (storage.checkpoints.CheckpointDir on disk).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from charlm.config import TrainConfig
from charlm.data import Corpus, assemble_batch, batch_dataset, batch_rows, corpus_on_device
from charlm.evaluate import LN2, headline_nats, make_scorer, metrics_from_nats
from charlm.loss import token_nll
from charlm.optim import make_optimizer, schedule, schedule_progress

REPORT_SECONDS = 2.0  # the longest the host goes without reading the loss back
# What one compiled call should last when TrainConfig.steps_per_call is 0 (auto): long
# enough that the call's launch (~1.4 ms on a CPU) is noise, short enough that the time
# budget, checkpoints and progress are still checked several times a second.
CALL_SECONDS = 0.25
MAX_STEPS_PER_CALL = 64
# Early stopping counts an epoch without a better validation score only from this point of the
# learning-rate schedule on (its progress, 0..1 of the planned steps or the time budget). While
# the rate is near its peak, validation wanders by a few hundredths of a bit from epoch to
# epoch: a 30-minute default run on a fast CPU (27 s epochs) was stopped after 10 minutes at
# 1.85 bits/char, validation still falling with training. The best epoch's weights are kept
# either way, so waiting costs time, never quality.
EARLY_STOP_FROM = 0.5


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


class Callback:
    """Hooks the training loop calls; override what you need.

    `on_batch_end` runs after each read-back of the loss (every `report_every` steps, at
    most REPORT_SECONDS apart, and at each epoch's end), not after every step: `step` is
    the global step reached, logs hold epoch, batch, batches, steps and characters (trained
    since the last call), bits_per_char (their mean) and learning_rate.
    """

    def on_train_begin(self, info: dict[str, Any]) -> None: ...
    def on_batch_end(self, step: int, logs: dict[str, Any]) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_checkpoint(self, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, result: TrainResult) -> None: ...


class Checkpoint(Protocol):
    """Where fit keeps what a resumed run needs (storage.checkpoints.CheckpointDir)."""

    def save(self, arrays: Sequence[np.ndarray], state: dict[str, Any]) -> None: ...
    def load(self) -> tuple[list[np.ndarray], dict[str, Any]] | None: ...
    def save_best(self, arrays: Sequence[np.ndarray]) -> None: ...
    def load_best(self) -> list[np.ndarray] | None: ...


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


class _Trainer:
    """The compiled multi-step call and the device counters it adds to."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 strategy: tf.distribute.Strategy, corpus: Corpus, config: TrainConfig,
                 planned: int) -> None:
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        # Counters live outside the strategy: one copy, added to in cross-replica context.
        self.nats = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.chars = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.clock = tf.Variable(0.0, dtype=tf.float64, trainable=False)  # wall time at 0 s
        parts = strategy.experimental_distribute_values_from_function(
            lambda _: corpus_on_device(corpus))
        variables = model.trainable_variables
        with strategy.scope():
            self.averages = [tf.Variable(v, trainable=False, name="average")
                             for v in variables] if config.ema else []
        replicas, max_length = self.replicas, config.truncate_length
        budget = config.max_minutes * 60.0

        def replica_step(rows: tf.Tensor, corpus_part) -> tuple[tf.Tensor, tf.Tensor]:
            context = tf.distribute.get_replica_context()
            own = tf.gather(corpus_part.lengths, tf.maximum(rows, 0))
            own = tf.where(rows >= 0, own, -1)
            # Real characters of the whole batch: every replica's loss is its share of one
            # mean, so the summed gradients are those of the batch on one device.
            total = tf.reduce_sum(tf.cast(tf.clip_by_value(own, 0, max_length), tf.float32)
                                  + tf.cast((own >= 0) & (own <= max_length), tf.float32))
            mine = rows[context.replica_id_in_sync_group::replicas]
            inputs, targets, weights = assemble_batch(corpus_part, mine, max_length)
            with tf.GradientTape() as tape:
                logits = model(inputs, training=True)  # (b, T, V) float32
                nll = token_nll(targets, logits)  # (b, T)
                nats = tf.reduce_sum(nll * weights)
                scaled = optimizer.scale_loss(nats / total)
            grads = tape.gradient(scaled, variables)
            # The embedding's gradient arrives as IndexedSlices, one slice per character of
            # the batch. Made dense here, once: Keras' global-norm clipping would square each
            # slice before summing repeated ids (not the gradient's norm) and densify twice.
            grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                     for g in grads]
            if replicas > 1:
                grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            optimizer.apply_gradients(zip(grads, variables))
            return nats, tf.reduce_sum(weights)

        @tf.function
        def run(iterator, steps: tf.Tensor) -> tf.Tensor:
            done = tf.constant(0, tf.int64)
            for _ in tf.range(steps):
                batch = iterator.get_next_as_optional()
                if not batch.has_value():
                    break
                elapsed = tf.timestamp() - self.clock
                progress = schedule_progress(self.step, planned, elapsed, budget)
                optimizer.learning_rate.assign(
                    tf.cast(schedule(config, progress, self.step),
                            optimizer.learning_rate.dtype))
                nats, chars = strategy.run(replica_step, args=(batch.get_value(), parts))
                sum_ = tf.distribute.ReduceOp.SUM
                self.nats.assign_add(tf.cast(strategy.reduce(sum_, nats, axis=None), tf.float64))
                self.chars.assign_add(
                    tf.cast(strategy.reduce(sum_, chars, axis=None), tf.float64))
                if self.averages:
                    # TensorFlow's ExponentialMovingAverage warm-up: early weights fade fast.
                    step = tf.cast(self.step, tf.float32)
                    decay = tf.minimum(config.ema, (1.0 + step) / (10.0 + step))
                    for average, variable in zip(self.averages, variables):
                        average.assign(decay * average + (1.0 - decay) * variable)
                self.step.assign_add(1)
                done += 1
            return done

        self.run = run

    def swap_averages(self, variables: Sequence[tf.Variable]) -> None:
        """Exchange the weights and their moving averages (a no-op without ema)."""
        for average, variable in zip(self.averages, variables):
            kept = variable.numpy()
            variable.assign(average.numpy())
            average.assign(kept)

    def counters(self) -> tuple[float, float, int]:
        """(nats, characters, step) so far: the read-back that waits for the device."""
        return float(self.nats.numpy()), float(self.chars.numpy()), int(self.step.numpy())


class _Reporter:
    """Reads the device counters back: progress callbacks and the NaN/inf check."""

    def __init__(self, trainer: _Trainer, optimizer: keras.optimizers.Optimizer,
                 result: TrainResult, callbacks: Sequence[Callback],
                 checkpoint: Checkpoint | None, epoch: int, batches: int) -> None:
        self.trainer, self.optimizer, self.result = trainer, optimizer, result
        self.callbacks, self.checkpoint = callbacks, checkpoint
        self.epoch, self.batches = epoch, batches
        self.nats, self.chars, self.step = trainer.counters()
        self.time = time.monotonic()

    def report(self, batch: int) -> None:
        nats, chars, step = self.trainer.counters()
        assert step == self.result.steps, "the device ran another number of steps"
        new_nats, new_chars = nats - self.nats, chars - self.chars
        if not math.isfinite(new_nats):
            where = (f"the last good checkpoint is kept in {self.checkpoint}"
                     if self.checkpoint is not None else "no checkpoint directory was given")
            raise TrainingError(
                f"loss became {new_nats} at epoch {self.epoch + 1}, within batches "
                f"{batch - (step - self.step) + 1}..{batch}; {where}; try a lower "
                "learning_rate or clip_norm")
        self.result.characters += int(round(new_chars))
        logs = {"epoch": self.epoch + 1, "batch": batch, "batches": self.batches,
                "steps": step - self.step, "characters": int(round(new_chars)),
                "bits_per_char": new_nats / max(new_chars, 1.0) / LN2,
                "learning_rate": float(self.optimizer.learning_rate.numpy())}
        self.nats, self.chars, self.step, self.time = nats, chars, step, time.monotonic()
        for cb in self.callbacks:
            cb.on_batch_end(step, logs)


def _state_variables(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                     trainer: _Trainer) -> list[tf.Variable]:
    """What a resumed run needs: every model variable (RNG states included), optimizer
    slots and the weights' moving averages."""
    return [*model.variables, *optimizer.variables, *trainer.averages]


def _arrays(variables: Sequence[tf.Variable]) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in variables]


def _restore(variables: Sequence[tf.Variable], arrays: list[np.ndarray]) -> None:
    assert len(arrays) == len(variables), "checkpoint layout does not match the model"
    for var, value in zip(variables, arrays):
        var.assign(value)


def steps_per_call(config: TrainConfig, step_seconds: float | None, until_report: int) -> int:
    """Steps for the next compiled call: config.steps_per_call, or when that is 0 as many
    as last about CALL_SECONDS at the previous call's `step_seconds` (1 before any), never
    past the next read-back of the loss, `until_report` steps away."""
    if config.steps_per_call:
        return config.steps_per_call
    if step_seconds is None:
        return 1
    fit_in = CALL_SECONDS // max(step_seconds, 1e-6)
    return int(max(1, min(MAX_STEPS_PER_CALL, until_report, fit_in)))


def fit(model: keras.Model, train: Corpus, validation: Corpus, config: TrainConfig,
        callbacks: Sequence[Callback] = (), checkpoint: Checkpoint | None = None,
        fingerprint: str = "", strategy: tf.distribute.Strategy | None = None) -> TrainResult:
    """Train `model` in place; on return it holds the best weights seen on validation.

    `checkpoint`, when given, receives a checkpoint every `checkpoint_minutes` and at each
    epoch end; a later call with a checkpoint holding the same `fingerprint` resumes from
    it. With a `strategy` of several replicas, `model` must have been built in its scope.
    """
    if len(train) == 0:
        raise ValueError("no training headlines")
    if len(validation) == 0:
        raise ValueError("no validation headlines")
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if config.batch_size < replicas:
        raise ValueError(f"batch_size {config.batch_size} is smaller than the {replicas} "
                         "devices it is split over")
    if config.validation_limit and len(validation) > config.validation_limit:
        pick = np.random.default_rng(config.seed).choice(
            len(validation), config.validation_limit, replace=False)
        validation = validation.take(np.sort(pick))

    per_epoch = math.ceil(len(train) / config.batch_size)
    planned = config.epochs * per_epoch
    with strategy.scope():
        optimizer = make_optimizer(model, config)
    trainer = _Trainer(model, optimizer, strategy, train, config, planned)
    scorer = make_scorer(model, validation)

    result = TrainResult()
    epoch, skip = 0, 0
    best_weights = None
    state = None
    if checkpoint is not None:
        saved = checkpoint.load()
        if saved is not None and saved[1].get("fingerprint") == fingerprint:
            _restore(_state_variables(model, optimizer, trainer), saved[0])
            state = saved[1]  # else another run's checkpoint: start over, untouched
    if state is not None:
        result = TrainResult(**state["result"])
        epoch, skip = state["epoch"], state["batch"]
        result.resumed_from = {"epoch": epoch, "batch": skip, "step": result.steps}
        best = checkpoint.load_best()
        if best is not None:
            best_weights = best
    trainer.step.assign(result.steps)

    budget = config.max_minutes * 60.0
    info = {"headlines": len(train), "validation_headlines": len(validation),
            "batches_per_epoch": per_epoch, "characters_per_epoch": train.characters,
            "replicas": replicas, "resumed_from": result.resumed_from}
    for cb in callbacks:
        cb.on_train_begin(info)

    def save(epoch_: int, batch_: int) -> None:
        if checkpoint is None:
            return
        payload = {"epoch": epoch_, "batch": batch_, "fingerprint": fingerprint,
                   "result": result.to_dict()}
        checkpoint.save(_arrays(_state_variables(model, optimizer, trainer)), payload)
        for cb in callbacks:
            cb.on_checkpoint({"epoch": epoch_, "batch": batch_})

    start = time.monotonic() - result.seconds
    step_seconds = None  # measured on the previous call
    trainer.clock.assign(time.time() - result.seconds)
    last_checkpoint = time.monotonic()
    bad_epochs = sum(1 for h in result.history if h["epoch"] > result.best_epoch
                     and h.get("progress", 1.0) >= EARLY_STOP_FROM)
    stopped = ""
    while epoch < config.epochs and not stopped:
        rng = np.random.default_rng([config.seed, epoch])  # same batches on resume
        plan = batch_rows(train, config.batch_size, rng)
        iterator = iter(batch_dataset(plan, skip, replicas))
        t0 = time.monotonic()
        epoch_nats, epoch_chars, _ = trainer.counters()
        reporter = _Reporter(trainer, optimizer, result, callbacks, checkpoint, epoch, len(plan))
        batch = skip

        while batch < len(plan):
            until_report = config.report_every - (result.steps - reporter.step)
            count = min(steps_per_call(config, step_seconds, until_report), len(plan) - batch)
            called = time.monotonic()
            trainer.run(iterator, tf.constant(count, tf.int64))
            step_seconds = (time.monotonic() - called) / count
            batch += count
            result.steps += count
            now = time.monotonic()
            if (result.steps - reporter.step >= config.report_every
                    or now - reporter.time >= REPORT_SECONDS):
                reporter.report(batch)
            if now - start >= budget:
                stopped = "time_budget"
                break
            if now - last_checkpoint >= config.checkpoint_minutes * 60 and batch < len(plan):
                if result.steps > reporter.step:
                    reporter.report(batch)  # only a checked loss goes into a checkpoint
                result.seconds = time.monotonic() - start
                save(epoch, batch)
                last_checkpoint = time.monotonic()
        if result.steps > reporter.step:
            reporter.report(batch)
        train_seconds = time.monotonic() - t0
        skip = 0
        nats, chars, _ = trainer.counters()
        v0 = time.monotonic()
        trainer.swap_averages(model.trainable_variables)  # validate (and keep) the averages
        valid_nats = headline_nats(model, validation, scorer=scorer)
        valid = metrics_from_nats(float(valid_nats.sum()), validation.characters)["bits_per_char"]
        elapsed = time.monotonic() - start
        entry = {
            "epoch": epoch + 1,
            "train_bpc": (nats - epoch_nats) / max(chars - epoch_chars, 1.0) / LN2,
            "validation_bpc": valid,
            "seconds": time.monotonic() - t0,
            "train_seconds": train_seconds,
            "validation_seconds": time.monotonic() - v0,
            "elapsed": elapsed,
            "learning_rate": float(optimizer.learning_rate.numpy()),
            # how far the schedule is (what the step's learning rate follows), 0..1
            "progress": float(schedule_progress(result.steps, planned, elapsed, budget)),
            "complete": stopped != "time_budget",
            "traces": trainer.run.experimental_get_tracing_count(),  # stays 1: no retracing
        }
        result.history.append(entry)
        if valid < result.best_validation_bpc:
            result.best_validation_bpc, result.best_epoch = valid, epoch + 1
            best_weights = model.get_weights()
            bad_epochs = 0
            if checkpoint is not None:
                checkpoint.save_best(best_weights)
        elif entry["progress"] >= EARLY_STOP_FROM:
            bad_epochs += 1
        trainer.swap_averages(model.trainable_variables)
        for cb in callbacks:
            cb.on_epoch_end(epoch + 1, entry)
        epoch += 1
        if not stopped and bad_epochs >= config.patience:
            stopped = "early_stopping"
        result.seconds = time.monotonic() - start
        save(epoch, 0)
        last_checkpoint = time.monotonic()
    result.stopped = stopped or "epochs"
    result.seconds = time.monotonic() - start
    if best_weights is not None:
        model.set_weights(best_weights)
    for cb in callbacks:
        cb.on_train_end(result)
    return result

