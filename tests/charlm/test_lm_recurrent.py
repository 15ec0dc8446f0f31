"""charlm.recurrent: the CPU GRU path computes what keras.layers.GRU computes, loads its
weights unchanged, and steps aside where it does not apply (cuDNN, the article variant)."""

from __future__ import annotations

from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from charlm import recurrent
from charlm.config import ModelConfig
from charlm.model import build_model, recurrent_layers


def _random_gru(units: int, x: tf.Tensor, seed: int) -> keras.layers.GRU:
    layer = keras.layers.GRU(units, return_sequences=True, return_state=True, use_cudnn=False)
    layer(x)
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.5)
    return layer


@pytest.mark.parametrize("compiled", [False, True])
def test_gru_outputs_and_gradients_match_keras(compiled):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 6, 5)).astype("float32"))
    layer = _random_gru(7, x, seed=1)
    probe = tf.constant(rng.normal(size=(3, 6, 7)).astype("float32"))
    weights = [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias]

    def both():
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ref, ref_h = layer(x)
            out, h = recurrent.gru(x, tf.zeros((3, 7)), *weights)
            ref_loss = tf.reduce_sum(ref * probe) + tf.reduce_sum(ref_h * probe[:, 0])
            loss = tf.reduce_sum(out * probe) + tf.reduce_sum(h * probe[:, 0])
        return ((ref, ref_h, *tape.gradient(ref_loss, [x, *weights])),
                (out, h, *tape.gradient(loss, [x, *weights])))

    expected, got = tf.function(both)() if compiled else both()
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5)


def test_model_saved_with_keras_gru_loads_and_scores_the_same(tmp_path):
    config = ModelConfig(cell="gru", hidden=12, depth=2, embedding=6, dropout=0.0, seed=5)
    with mock.patch.object(recurrent, "GRU", keras.layers.GRU):  # the previous release
        old = build_model(config)
    assert type(recurrent_layers(old)[0]) is keras.layers.GRU
    path = tmp_path / "old.weights.h5"
    old.save_weights(path)
    new = build_model(config)
    assert all(isinstance(layer, recurrent.GRU) for layer in recurrent_layers(new))
    new.load_weights(path)
    tokens = np.random.default_rng(2).integers(0, 118, size=(4, 9))
    with mock.patch.object(recurrent, "gru", wraps=recurrent.gru) as plain, \
            mock.patch.object(recurrent, "fused_gru", wraps=recurrent.fused_gru) as fused:
        scored = new(tokens).numpy()
    assert plain.call_count + fused.call_count == 2  # both layers took the new path
    np.testing.assert_allclose(scored, old(tokens).numpy(), rtol=1e-5, atol=1e-5)


def test_bfloat16_path_stays_close_to_float32():
    config = ModelConfig(cell="gru", hidden=32, depth=1, embedding=8, dropout=0.0, seed=1)
    exact = build_model(config, precision="float32")
    mixed = build_model(config, precision="mixed_bfloat16")
    mixed.set_weights(exact.get_weights())
    tokens = np.random.default_rng(3).integers(0, 118, size=(4, 20))
    a = tf.nn.log_softmax(exact(tokens)).numpy()
    b = tf.nn.log_softmax(mixed(tokens)).numpy()
    assert np.abs(a - b).max() < 0.05  # bf16 matmul operands, float32 state and gates


def test_fast_path_steps_aside_where_it_does_not_apply():
    x = tf.zeros((2, 3, 4))
    plain = recurrent.GRU(5, return_sequences=True)
    plain.use_cudnn = False
    plain(x)
    assert recurrent._fast_path_ok(plain, None)
    assert not recurrent._fast_path_ok(plain, tf.ones((2, 3), bool))  # a mask
    plain.use_cudnn = True  # a GPU: cuDNN, through Keras' own inner_loop
    assert not recurrent._fast_path_ok(plain, None)
    article = recurrent.GRU(5, reset_after=False, return_sequences=True)
    article.use_cudnn = False
    article(x)
    assert not recurrent._fast_path_ok(article, None)
    taken = AssertionError("fast path taken")
    with mock.patch.object(recurrent, "gru", side_effect=taken), \
            mock.patch.object(recurrent, "fused_gru", side_effect=taken):
        article(x)  # the article's variant runs Keras' loop
