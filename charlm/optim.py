"""The optimizer and the learning-rate schedule of charlm.train.

Adam with global-norm gradient clipping and optional decoupled weight decay, wrapped in
dynamic loss scaling when the model computes in float16; a warm-up then a cosine decay
over the run's progress, evaluated in the compiled step at every step.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from charlm.config import TrainConfig

WARMUP_STEPS = 100


def schedule_progress(step, planned: int, elapsed, budget: float) -> tf.Tensor:
    """How far the schedule is, 0..1 (float64): of the `planned` steps or of the time
    `budget` in seconds, whichever is further (graph or eager; numbers or tensors)."""
    ratio = tf.maximum(tf.cast(step, tf.float64) / planned,
                       tf.cast(elapsed, tf.float64) / budget)
    return tf.minimum(ratio, tf.constant(1.0, tf.float64))


def schedule(config: TrainConfig, progress: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """The learning rate at `progress` (0..1 of the planned steps or the time budget,
    whichever is further) and global `step`, as a float64 tensor (graph or eager)."""
    progress = tf.clip_by_value(tf.cast(progress, tf.float64), 0.0, 1.0)
    warm = tf.minimum(tf.constant(1.0, tf.float64),
                      (tf.cast(step, tf.float64) + 1.0) / WARMUP_STEPS)
    cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
    low, peak = config.min_learning_rate, config.learning_rate
    return warm * (low + (peak - low) * cosine)


def learning_rate(config: TrainConfig, progress: float, step: int) -> float:
    """Warm-up then cosine decay from learning_rate to min_learning_rate over `progress` 0..1.

    The very formula the compiled step evaluates at every step.
    """
    return float(schedule(config, tf.constant(progress, tf.float64),
                           tf.constant(step, tf.int64)))


def uses_float16(model: keras.Model) -> bool:
    """True when any layer computes in float16 (the model's own policy stays float32)."""
    return any(layer.dtype_policy.compute_dtype == "float16" for layer in model.layers)


def make_optimizer(model: keras.Model, config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam with global-norm clipping; wrapped in dynamic loss scaling for float16 models."""
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate,
                                      global_clipnorm=config.clip_norm,
                                      weight_decay=config.weight_decay or None)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    # The train step sums gradients across replicas itself, before the optimizer clips
    # them; Keras would clip each replica's share first and sum after, so N devices
    # would train differently from one. Its own all-reduce is therefore a no-op here.
    optimizer._all_reduce_sum_gradients = lambda grads_and_vars: grads_and_vars
    if uses_float16(model):
        # float16 gradients of a loss averaged over ~40k characters underflow to zero.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return optimizer
