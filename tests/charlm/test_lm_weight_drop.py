"""Weight drop (ModelConfig.weight_drop): DropConnect on the recurrent kernels while training,
the same on every recurrent path, absent from scoring and generation, and from weight files."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from charlm import kernels, recurrent
from charlm.config import ModelConfig
from charlm.model import build_model, recurrent_layers

TOKENS = np.random.default_rng(0).integers(0, 118, size=(4, 11))


def _config(cell: str, weight_drop: float) -> ModelConfig:
    return ModelConfig(cell=cell, hidden=16, depth=2, embedding=8, dropout=0.0,
                       weight_drop=weight_drop, seed=3)


def _outputs_and_grads(model) -> list[np.ndarray]:
    kernels_ = [layer.cell.recurrent_kernel for layer in recurrent_layers(model)]
    with tf.GradientTape() as tape:
        logits = model(TOKENS, training=True)
        loss = tf.reduce_sum(tf.nn.log_softmax(logits)[..., 7])
    return [logits.numpy(), *(g.numpy() for g in tape.gradient(loss, kernels_))]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_training_steps_drop_recurrent_weights_and_scoring_does_not(cell):
    dropped, plain = build_model(_config(cell, 0.5)), build_model(_config(cell, 0.0))
    plain.set_weights(dropped.get_weights())  # the same weights: the rate adds none
    np.testing.assert_allclose(dropped(TOKENS, training=False), plain(TOKENS, training=False),
                               rtol=1e-6)
    np.testing.assert_allclose(plain(TOKENS, training=True), plain(TOKENS, training=False),
                               rtol=1e-6)
    first, second = dropped(TOKENS, training=True), dropped(TOKENS, training=True)
    assert np.abs(first - plain(TOKENS, training=False)).max() > 1e-3
    assert np.abs(first - second).max() > 1e-3  # a new mask every training step
    again = build_model(_config(cell, 0.5))
    again.set_weights(dropped.get_weights())
    np.testing.assert_allclose(again(TOKENS, training=True), first, rtol=1e-6)  # seeded


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_every_recurrent_path_drops_the_same_weights(cell):
    if kernels.ops() is None:
        pytest.skip(f"the fused kernels are unavailable here: {kernels.status().reason}")
    fused = build_model(_config(cell, 0.4))
    keras_loop = build_model(_config(cell, 0.4))
    for layer in recurrent_layers(keras_loop):
        layer.use_cudnn = "auto"  # Keras' inner_loop (no GPU: its generic loop)
    expected = _outputs_and_grads(fused)
    taken = AssertionError("fast path taken")
    with mock.patch.object(recurrent, "fused_gru", side_effect=taken), \
            mock.patch.object(recurrent, "fused_lstm", side_effect=taken):
        got = _outputs_and_grads(keras_loop)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    if cell == "gru":  # without the kernels the GRU runs `gru`, plain TensorFlow ops
        plain = build_model(_config(cell, 0.4))
        with mock.patch.object(kernels, "ops", return_value=None):
            got = _outputs_and_grads(plain)
        for a, b in zip(expected, got):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_a_model_with_weight_drop_saves_the_weights_of_one_without(tmp_path):
    path = tmp_path / "m.weights.h5"
    build_model(_config("gru", 0.3)).save_weights(path)
    plain = build_model(_config("gru", 0.0))
    plain.load_weights(path)  # the seed generators' states are not weights
    np.testing.assert_allclose(plain(TOKENS), build_model(_config("gru", 0.3))(TOKENS),
                               rtol=1e-6)


@pytest.mark.parametrize("fields, message", [
    (dict(weight_drop=1.0), "weight_drop must be in [0, 1), got 1.0"),
    (dict(weight_drop=-0.1), "weight_drop must be in [0, 1), got -0.1"),
    (dict(cell="rnn", weight_drop=0.2), "weight_drop is for gru and lstm cells, got 0.2"),
])
def test_bad_weight_drop_is_refused_by_name(fields, message):
    with pytest.raises(ValueError) as error:
        ModelConfig(**fields)
    assert message in str(error.value)
