"""charlm.kernels and the fused recurrent paths: the LSTM and GRU sequence ops compute what
keras.layers.LSTM / GRU compute (outputs, final states, every gradient), in float32 to
rounding and in bfloat16 within its precision; models saved with Keras' layers load and score
the same; CHARLM_KERNELS=0 and a failed build fall back to Keras' loops."""

from __future__ import annotations

import logging
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from charlm import kernels, recurrent
from charlm.config import ModelConfig
from charlm.model import build_model, recurrent_layers

pytestmark = pytest.mark.skipif(kernels.ops() is None, reason="no C++ compiler here")

CELLS = {"lstm": (recurrent.LSTM, keras.layers.LSTM), "gru": (recurrent.GRU, keras.layers.GRU)}


def _pair(cell: str, units: int, x: tf.Tensor, policy: str, seed: int):
    ours, theirs = (cls(units, return_sequences=True, return_state=True, dtype=policy)
                    for cls in CELLS[cell])
    for layer in (ours, theirs):
        layer.use_cudnn = False
        layer.build(x.shape)
    rng = np.random.default_rng(seed)
    for a, b in zip(ours.weights, theirs.weights):
        value = rng.normal(size=a.shape).astype("float32") * 0.4
        a.assign(value)
        b.assign(value)
    return ours, theirs


def _run(layer, x: tf.Tensor, probe: tf.Tensor, initial: list[tf.Tensor] | None = None):
    with tf.GradientTape() as tape:
        tape.watch(x)
        tape.watch(initial or [])
        outputs, *states = layer(x, initial_state=initial)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * probe)
        for i, state in enumerate(states):  # every final state feeds the loss
            loss += (0.3 + i) * tf.reduce_sum(tf.cast(state, tf.float32) * probe[:, -1])
    grads = tape.gradient(loss, [x, *(initial or []), *layer.trainable_variables])
    return [tf.cast(t, tf.float32).numpy() for t in (outputs, *states, *grads)]


# Odd sizes on purpose: batch rows not a multiple of the 4-row tile, units whose gate width is
# not a multiple of the 16- and 64-column tiles, an odd recurrent width for the GRU's 3H.
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("batch,steps,width,units", [(3, 6, 5, 7), (13, 4, 9, 33), (20, 3, 6, 48)])
def test_fused_float32_matches_keras(cell, batch, steps, width, units):
    rng = np.random.default_rng(batch)
    x = tf.constant(rng.normal(size=(batch, steps, width)).astype("float32"))
    probe = tf.constant(rng.normal(size=(batch, steps, units)).astype("float32"))
    ours, theirs = _pair(cell, units, x, "float32", seed=units)
    fused = recurrent.fused_lstm if cell == "lstm" else recurrent.fused_gru
    with mock.patch.object(recurrent, fused.__name__, wraps=fused) as spy:
        got = _run(ours, x, probe)
    assert spy.call_count == 1
    for a, b in zip(got, _run(theirs, x, probe)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_float32_matches_keras_from_a_given_state(cell):
    # The recurrent kernel's gradient pairs each step with the state before it: at step 0
    # that is the initial state, not the previous batch row's last output.
    rng = np.random.default_rng(11)
    x = tf.constant(rng.normal(size=(5, 4, 3)).astype("float32"))
    probe = tf.constant(rng.normal(size=(5, 4, 9)).astype("float32"))
    initial = [tf.constant(rng.normal(size=(5, 9)).astype("float32"))
               for _ in range(2 if cell == "lstm" else 1)]
    ours, theirs = _pair(cell, 9, x, "float32", seed=2)
    for a, b in zip(_run(ours, x, probe, initial), _run(theirs, x, probe, initial)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_bfloat16_is_as_close_to_float32_as_keras(cell):
    rng = np.random.default_rng(4)
    x32 = tf.constant(rng.normal(size=(16, 7, 10)).astype("float32"))
    x = tf.cast(x32, tf.bfloat16)
    probe = tf.constant(rng.normal(size=(16, 7, 64)).astype("float32"))
    ours, theirs = _pair(cell, 64, x, "mixed_bfloat16", seed=5)
    _, exact = _pair(cell, 64, x32, "float32", seed=5)
    truth = _run(exact, tf.cast(x, tf.float32), probe)
    for a, b, t in zip(_run(ours, x, probe), _run(theirs, x, probe), truth):
        # The fused path keeps the recurrent products in float32 where Keras rounds them to
        # bfloat16: never further from the float32 result than Keras' own bf16 loop.
        assert np.abs(a - t).max() <= 1.25 * np.abs(b - t).max() + 1e-3 * np.abs(t).max()


def test_compiled_graph_runs_the_fused_ops():
    ours, _ = _pair("lstm", 8, tf.zeros((2, 3, 4)), "float32", seed=0)
    step = tf.function(lambda x: ours(x)[0])
    graph = step.get_concrete_function(tf.TensorSpec((None, None, 4))).graph
    assert "CharlmLstmSequence" in {op.type for op in graph.get_operations()}


def _model_gradients(model: keras.Model, tokens: np.ndarray, probe: np.ndarray):
    """A compiled step's logits and every trainable variable's gradient, dense."""

    @tf.function
    def step(tokens):
        with tf.GradientTape() as tape:
            logits = model(tokens, training=True)
            loss = tf.reduce_sum(tf.cast(logits, tf.float32) * probe)
        return logits, tape.gradient(loss, model.trainable_variables)

    logits, grads = step(tf.constant(tokens))
    return step, [logits.numpy(), *(tf.convert_to_tensor(g).numpy() for g in grads)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_first_layer_projects_the_embedding_table_and_matches_keras(cell):
    # Odd units and embedding width; every id of the table may appear, some repeatedly.
    config = ModelConfig(cell=cell, hidden=33, depth=2, embedding=5, dropout=0.0, seed=3)
    with mock.patch.object(recurrent, cell.upper(), CELLS[cell][1]):
        keras_model = build_model(config)
    for layer in recurrent_layers(keras_model):
        layer.use_cudnn = False
    model = build_model(config)
    model.set_weights(keras_model.get_weights())
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 119, size=(6, 11))
    probe = rng.normal(size=(6, 11, 118)).astype("float32")
    step, got = _model_gradients(model, tokens, probe)
    graph = step.get_concrete_function(tf.TensorSpec((6, 11), tf.int64)).graph
    for kind in ("Sequence", "SequenceGrad"):
        ops = [op for op in graph.get_operations() if op.type.endswith(kind)]
        # the first layer reads its steps from, and sums its input gradient into, the
        # projected 119-row table; the second layer not
        assert sorted(op.get_attr("vocab") for op in ops) == [0, 119]
    _, expected = _model_gradients(keras_model, tokens, probe)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_grad_op_names_an_id_outside_the_table(cell):
    native = kernels.ops()
    b, t, h = 2, 3, 4
    ids = tf.constant([[0, 1, 2], [3, 9, 1]], tf.int64)
    zeros = tf.zeros((b, h))
    if cell == "lstm":
        call = lambda: native.charlm_lstm_sequence_grad(  # noqa: E731
            tf.zeros((b, t, 4 * h)), tf.zeros((b, t, h)), zeros, tf.zeros((b, t, h)), zeros,
            zeros, tf.zeros((h, 4 * h)), ids, vocab=5)
    else:
        call = lambda: native.charlm_gru_sequence_grad(  # noqa: E731
            tf.zeros((b, t, 5 * h)), tf.zeros((b, t, h)), zeros, tf.zeros((h, 3 * h)), ids,
            vocab=5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"id 9 is outside \[0, 5\)"):
        call()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_model_saved_with_keras_layers_loads_and_scores_the_same(tmp_path, cell):
    config = ModelConfig(cell=cell, hidden=12, depth=2, embedding=6, dropout=0.0, seed=5)
    with mock.patch.object(recurrent, cell.upper(), CELLS[cell][1]):  # the previous release
        old = build_model(config)
    assert type(recurrent_layers(old)[0]) is CELLS[cell][1]
    old.save_weights(tmp_path / "old.weights.h5")
    new = build_model(config)
    new.load_weights(tmp_path / "old.weights.h5")
    tokens = np.random.default_rng(2).integers(0, 118, size=(5, 9))
    fused = recurrent.fused_lstm if cell == "lstm" else recurrent.fused_gru
    with mock.patch.object(recurrent, fused.__name__, wraps=fused) as spy:
        scored = new(tokens).numpy()
    assert spy.call_count == 2
    np.testing.assert_allclose(scored, old(tokens).numpy(), rtol=1e-5, atol=1e-5)


def test_kernels_off_runs_keras_loops(monkeypatch):
    monkeypatch.setenv("CHARLM_KERNELS", "0")
    assert kernels.ops() is None
    layer = recurrent.LSTM(5, return_sequences=True)
    layer.use_cudnn = False
    with mock.patch.object(recurrent, "fused_lstm", side_effect=AssertionError("fused")):
        assert layer(tf.zeros((2, 3, 4))).shape == (2, 3, 5)


def test_failed_build_names_the_cause_and_falls_back(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CXX", "/bin/false")
    with pytest.raises(RuntimeError, match="/bin/false failed"):
        kernels.build(tmp_path / "gates.so")
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind
    monkeypatch.setenv("CHARLM_KERNEL_DIR", str(tmp_path / "cache"))
    kernels._load.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="charlm"):
            assert kernels._load() is None
        assert "Keras' recurrent loops run instead" in caplog.text
        assert "/bin/false failed" in caplog.text
    finally:
        kernels._load.cache_clear()  # the next caller loads the session's build again


def test_build_cache_is_keyed_by_source_and_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARLM_KERNEL_DIR", str(tmp_path))
    path = kernels.library_path()
    assert path.parent == tmp_path and path.name.startswith("gates-")
    monkeypatch.setattr(kernels, "_cpu_flags", lambda: "flags : sse2")
    assert kernels.library_path() != path  # another CPU gets its own build


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generation_step_matches_keras_cell(cell):
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=(5, 6)).astype("float32"))
    ours, theirs = _pair(cell, 9, tf.zeros((5, 1, 6)), "float32", seed=3)
    states = [tf.constant(rng.normal(size=(5, 9)).astype("float32"))
              for _ in range(2 if cell == "lstm" else 1)]
    with mock.patch.object(kernels, "ops", wraps=kernels.ops) as used:
        h, new = ours.step(x, states)
    assert used.called  # the fused op ran, not Keras' cell
    h_ref, new_ref = theirs.cell(x, states, training=False)
    new_ref = new_ref if isinstance(new_ref, (list, tuple)) else [new_ref]
    np.testing.assert_allclose(h.numpy(), h_ref.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(new, new_ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
