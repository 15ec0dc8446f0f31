"""charlm.kernels and the fused recurrent paths: the LSTM and GRU sequence ops compute what
keras.layers.LSTM / GRU compute (outputs, final states, every gradient), in float32 to
rounding and in bfloat16 within its precision, and let a NaN through as Keras does; models
saved with Keras' layers load and score the same; CHARLM_KERNELS=0 and a failed build fall
back to Keras' loops; `status()` names the path that runs. The build's cache, in processes
of its own: no HOME, a read-only cache, two processes building at once, a build killed
mid-way (a stand-in compiler copies this session's build, slowly when a test needs time)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any
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
    with pytest.raises(kernels.KernelsUnavailable, match="/bin/false failed"):
        kernels.build(tmp_path / "gates.so")
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind
    monkeypatch.setenv("CHARLM_KERNEL_DIR", str(tmp_path / "cache"))
    # The build is looked up per cache folder: this one fails, the session's stays loaded.
    state = kernels.status("float32", "lstm")
    assert state.path == "keras" and state.fallback
    assert "/bin/false failed" in state.reason and "2x slower" in state.reason
    assert state.describe().startswith("keras, float32: /bin/false failed")
    monkeypatch.setattr(kernels, "_told", False)
    with caplog.at_level(logging.WARNING, logger="charlm"):
        assert kernels.ops() is None
        assert kernels.ops() is None
    # said once per process, naming the cause
    assert caplog.text.count("Keras' recurrent loops run instead") == 1
    assert "/bin/false failed" in caplog.text
    with pytest.raises(kernels.KernelsUnavailable, match="/bin/false failed"):
        kernels.prepare()


def test_a_compiler_that_cannot_run_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLM_KERNEL_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    state = kernels.status("float32", "gru")
    assert state.path == "keras" and state.fallback
    assert "no-such-g++ cannot run: No such file or directory" in state.reason
    # a compiler's failure is no folder's: the private fallback folder is not tried
    assert state.folder == str(tmp_path / "cache")


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


# ------------------------------------------------------------------ which path runs


@pytest.mark.parametrize("cell,precision,variant", [
    ("lstm", "float32", "keras"), ("gru", "mixed_bfloat16", "keras"),
    ("gru", "float32", "article"), ("lstm", "mixed_float16", "keras"),
    ("rnn", "float32", "keras")])
def test_status_names_the_path_a_model_runs(cell, precision, variant):
    state = kernels.status(precision, cell, variant)
    config = ModelConfig(cell=cell, hidden=8, depth=1, embedding=4, dropout=0.0,
                         gru_variant=variant)
    model = build_model(config, precision=precision)
    spies = {name: mock.patch.object(recurrent, name, wraps=getattr(recurrent, name))
             for name in ("fused_lstm", "fused_gru")}
    with spies["fused_lstm"] as lstm, spies["fused_gru"] as gru:
        tf.function(lambda t: model(t, training=True)).get_concrete_function(
            tf.TensorSpec((2, 5), tf.int64))
    assert state.path == ("kernels" if lstm.called or gru.called else "keras")
    assert state.precision == precision
    assert not state.fallback  # these are what the kernels do not cover, not a failure
    if state.path == "kernels":
        assert state.reason == "" and Path(state.library).exists()
        assert state.describe() == f"kernels, {precision}"
        assert state.library in state.detail()
    else:
        assert state.reason and state.describe() == f"keras, {precision}: {state.reason}"


def test_status_turned_off(monkeypatch):
    monkeypatch.setenv("CHARLM_KERNELS", "0")
    state = kernels.status("float32", "lstm")
    assert (state.path, state.fallback) == ("keras", True)
    assert state.reason == "turned off by CHARLM_KERNELS=0 (about 2x slower)"
    assert kernels.KernelStatus.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_status_names_the_cpu_features_of_the_build():
    import platform

    state = kernels.status("float32", "lstm")
    assert set(state.cpu_features) <= {"avx2", "fma", "avx512f", "avx512_bf16", "neon"}
    if platform.machine() == "x86_64":  # -march=native enables what /proc/cpuinfo lists
        flags = kernels._cpu_flags().split()
        assert list(state.cpu_features) == [
            name for name in ("avx2", "fma", "avx512f", "avx512_bf16") if name in flags]


# ------------------------------------------------------------------ NaN and infinity


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_in_the_inputs_reach_the_outputs_as_in_keras(cell, policy, bad):
    # The kernels are built with -ffast-math: a compiler allowed to assume finite numbers,
    # or a clamp by std::fmax, turned a NaN gate into a number (0 NaN outputs where Keras
    # has 12) and training went on with NaN weights. Every output, state and gradient must
    # be NaN where Keras' is, and agree elsewhere.
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 5, 4)).astype("float32")
    values[1, 2, 0] = bad
    x = tf.cast(tf.constant(values), tf.bfloat16 if policy != "float32" else tf.float32)
    probe = tf.constant(rng.normal(size=(3, 5, 7)).astype("float32"))
    ours, theirs = _pair(cell, 7, x, policy, seed=1)
    got, want = _run(ours, x, probe), _run(theirs, x, probe)
    assert not all(np.isfinite(t).all() for t in want)  # Keras has NaN or infinity somewhere
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        finite = np.isfinite(a) & np.isfinite(b)
        scale = 1e-4 if policy == "float32" else 0.1
        np.testing.assert_allclose(a[finite], b[finite], rtol=scale, atol=scale)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_nan_weight_reaches_the_outputs_as_in_keras(cell):
    x = tf.constant(np.random.default_rng(5).normal(size=(3, 4, 5)).astype("float32"))
    probe = tf.ones((3, 4, 6))
    ours, theirs = _pair(cell, 6, x, "float32", seed=4)
    for layer in (ours, theirs):
        rk = layer.cell.recurrent_kernel
        rk.assign(tf.tensor_scatter_nd_update(rk, [[2, 3]], [np.nan]))
    got, want = _run(ours, x, probe), _run(theirs, x, probe)
    assert np.isnan(want[0]).any()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_loss_op_sees_nan_and_infinity_as_tensorflow_does(bad):
    from charlm.loss import token_nll

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 118)).astype("float32")
    targets = rng.integers(0, 118, size=(2, 4))
    logits[0, 1, (targets[0, 1] + 1) % 118] = bad  # another character's logit
    logits[1, 2, targets[1, 2]] = bad  # the target's own
    logits_t, targets_t = tf.constant(logits), tf.constant(targets)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits_t)
        got = token_nll(targets_t, logits_t)
        want = tf.nn.sparse_softmax_cross_entropy_with_logits(targets_t, logits_t)
    assert np.isnan(want.numpy()).any() or np.isinf(want.numpy()).any()
    for a, b in ((got, want), (tape.gradient(got, logits_t), tape.gradient(want, logits_t))):
        a, b = a.numpy(), b.numpy()
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b))
        finite = np.isfinite(a) & np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-5, atol=1e-5)


def _poison(model: keras.Model, fault: str) -> None:
    """One bad number where training meets it at once (every headline's first input is the
    START row)."""
    from charlm.vocab import START

    if fault == "nan input":
        table = model.get_layer("embedding").embeddings
        table.assign(tf.tensor_scatter_nd_update(table, [[START]], [[np.nan] * table.shape[1]]))
    elif fault in ("nan weight", "inf weight"):
        kernel = recurrent_layers(model)[0].cell.recurrent_kernel
        kernel.assign(tf.tensor_scatter_nd_update(
            kernel, [[0, 1]], [np.nan if fault == "nan weight" else np.inf]))


@pytest.mark.parametrize("path", ["kernels", "keras"])
@pytest.mark.parametrize("fault", ["nan input", "nan weight", "inf weight", "diverging loss"])
def test_training_stops_on_nan_or_infinity_on_either_path(path, fault, monkeypatch):
    # A NaN or infinity in the inputs, the weights or the loss stops training with the
    # same clear error on the kernels' path as on Keras' (tests/tasks: nothing published).
    from charlm.config import TrainConfig
    from charlm.data import Corpus
    from charlm.demo_corpus import make_corpus
    from charlm.train import TrainingError, fit

    if path == "keras":
        monkeypatch.setenv("CHARLM_KERNELS", "0")
    texts = [t for _, t in make_corpus(160, np.random.default_rng(2))]
    train, valid = Corpus.from_texts(texts[:128]), Corpus.from_texts(texts[128:])
    rate = 1e30 if fault == "diverging loss" else 1e-3  # Adam moves each weight by ~rate
    config = TrainConfig(batch_size=32, epochs=2, learning_rate=rate, warm_learning_rate=rate,
                         steps_per_call=1, report_every=1)
    with mock.patch.object(recurrent, "fused_gru", wraps=recurrent.fused_gru) as fused:
        model = build_model(ModelConfig(cell="gru", hidden=16, depth=2, embedding=8,
                                        dropout=0.0, seed=1))
        _poison(model, fault)
        with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch 1"):
            fit(model, train, valid, config)
    assert fused.called == (path == "kernels")


# ------------------------------------------------------------------ the build's cache

REPO = Path(__file__).resolve().parents[2]
# A process that asks which path training takes (building the kernels if it must), after
# waiting at $PROBE_GATE when given (so that two processes ask at the same moment).
PROBE = textwrap.dedent("""
    import json, os, pathlib, time
    import tensorflow
    from charlm import kernels
    gate = os.environ.get("PROBE_GATE")
    if gate:
        pathlib.Path(f"{gate}.{os.getpid()}").touch()
        while not os.path.exists(gate):
            time.sleep(0.02)
    print(json.dumps(kernels.status("float32", "gru").to_dict()))
""")
# g++'s stand-in: notes each call, takes $FAKE_CXX_SECONDS, then writes this session's real
# build to its -o path (the cache's logic is under test here, not the compiler).
FAKE_CXX = textwrap.dedent("""\
    #!/bin/sh
    echo "$$" >> "$FAKE_CXX_LOG"
    sleep "$FAKE_CXX_SECONDS"
    while [ $# -gt 0 ]; do
      if [ "$1" = "-o" ]; then out="$2"; fi
      shift
    done
    cp "$FAKE_CXX_LIBRARY" "$out"
""")
# Folders made read-only for one child: permissions do not stop root, so as root the child
# runs in a mount namespace of its own where they are read-only bind mounts (what a
# read-only container file system gives).
READ_ONLY = ('for d in "$@"; do mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" '
             '|| exit 97; done; exec "$PROBE_PYTHON" -c "$PROBE"')


class Box:
    """A temporary folder for children: the stand-in compiler, a copy of this session's
    build, folders to use as caches; `status` runs a child and returns what it found."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "cxx.log"
        self.log.touch()
        self.cxx = root / "fake-g++"
        self.cxx.write_text(FAKE_CXX)
        self.cxx.chmod(0o755)
        self.library = root / "session-build.so"
        shutil.copy(kernels.status("float32", "gru").library, self.library)
        self.name = kernels.library_path(root).name  # what every child looks for

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        return path

    def compiles(self) -> int:
        return len(self.log.read_text().split())

    def env(self, seconds: float = 0, **changes: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in (
            "HOME", "XDG_CACHE_HOME", "CHARLM_KERNEL_DIR", "CHARLM_KERNELS", "TMPDIR")}
        env.update(CXX=str(self.cxx), FAKE_CXX_LOG=str(self.log), FAKE_CXX_SECONDS=str(seconds),
                   FAKE_CXX_LIBRARY=str(self.library), PYTHONPATH=str(REPO))
        env.update(changes)
        return env

    def start(self, env: dict[str, str], read_only: tuple[Path, ...] = (),
              **popen: Any) -> subprocess.Popen:
        command = [sys.executable, "-c", PROBE]
        if read_only and os.getuid() == 0:
            env = {**env, "PROBE_PYTHON": sys.executable, "PROBE": PROBE}
            command = ["unshare", "-m", "sh", "-c", READ_ONLY, "sh", *map(str, read_only)]
        else:
            for folder in read_only:
                folder.chmod(0o555)
        return subprocess.Popen(command, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **popen)

    def status(self, env: dict[str, str], read_only: tuple[Path, ...] = ()) -> dict:
        child = self.start(env, read_only)
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-3000:]  # never a crash
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def box(tmp_path):
    try:
        yield Box(tmp_path)
    finally:
        for folder, _, _ in os.walk(tmp_path):
            os.chmod(folder, 0o755)  # what a test made read-only


@pytest.fixture
def read_only_ok():
    """Skips where this process cannot make a folder read-only for a child (root without
    mount namespaces)."""
    if os.getuid() == 0 and subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount --bind / /mnt"], capture_output=True,
            check=False).returncode != 0:
        pytest.skip("running as root without mount namespaces: no read-only folder for it")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _denied(text: str, folder: Path) -> bool:
    return f"{folder}: Permission denied" in text or f"{folder}: Read-only file system" in text


def test_without_home_the_build_goes_to_a_private_temporary_folder(box, monkeypatch):
    for name in ("HOME", "XDG_CACHE_HOME", "CHARLM_KERNEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert kernels.cache_dir() == kernels.fallback_dir()  # no HOME is no error
    temporary = box.folder("tmp")
    env = box.env(TMPDIR=str(temporary))  # no HOME, XDG_CACHE_HOME nor CHARLM_KERNEL_DIR
    first = box.status(env)
    private = temporary / f"charlm-kernels-{os.getuid()}"
    assert (first["path"], first["folder"]) == ("kernels", str(private))
    assert first["library"] == str(private / box.name)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert box.status(env) == first and box.compiles() == 1  # the next process loads it


def test_a_private_folder_others_can_write_is_refused(box):
    temporary = box.folder("tmp")
    shared = temporary / f"charlm-kernels-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could have put a library there: it must not be loaded
    state = box.status(box.env(TMPDIR=str(temporary)))
    assert (state["path"], state["fallback"]) == ("keras", True)
    assert f"{shared}: not a folder of this user's alone" in state["reason"]
    assert box.compiles() == 0 and _files(shared) == []


def test_a_read_only_cache_is_passed_over_for_the_private_folder(box, read_only_ok):
    cache, temporary = box.folder("cache"), box.folder("tmp")
    state = box.status(box.env(CHARLM_KERNEL_DIR=str(cache), TMPDIR=str(temporary)),
                       read_only=(cache,))
    private = temporary / f"charlm-kernels-{os.getuid()}"
    assert (state["path"], state["folder"]) == ("kernels", str(private))
    assert _files(cache) == [] and _files(private) == [box.name, f"{box.name}.lock"]


def test_a_read_only_cache_holding_the_build_loads_it_writing_nothing(box, read_only_ok):
    cache, temporary = box.folder("cache"), box.folder("tmp")
    # as in an image built with `charlm kernels`, run read-only
    shutil.copy(box.library, cache / box.name)
    state = box.status(box.env(CHARLM_KERNEL_DIR=str(cache), TMPDIR=str(temporary)),
                       read_only=(cache, temporary))
    assert (state["path"], state["library"]) == ("kernels", str(cache / box.name))
    assert box.compiles() == 0 and _files(cache) == [box.name] and _files(temporary) == []


def test_nowhere_to_build_falls_back_naming_each_folder(box, read_only_ok):
    cache, temporary = box.folder("cache"), box.folder("tmp")
    state = box.status(box.env(CHARLM_KERNEL_DIR=str(cache), TMPDIR=str(temporary)),
                       read_only=(cache, temporary))
    assert (state["path"], state["fallback"]) == ("keras", True)
    reason = state["reason"]
    assert reason.startswith("no folder can hold the build: ") and "2x slower" in reason
    assert _denied(reason, cache)
    assert _denied(reason, temporary / f"charlm-kernels-{os.getuid()}")
    assert box.compiles() == 0


def test_two_processes_building_at_once_build_once(box):
    cache, gate = box.folder("cache"), box.root / "go"
    env = box.env(seconds=3, CHARLM_KERNEL_DIR=str(cache), PROBE_GATE=str(gate))
    children = [box.start(env) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(box.root.glob("go.*"))) < 2:  # both imported TensorFlow, both waiting
        assert time.monotonic() < deadline and all(c.poll() is None for c in children)
        time.sleep(0.05)
    gate.touch()  # both ask now: one builds, the other waits for its lock, then loads
    states = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-3000:]
        states.append(json.loads(out.strip().splitlines()[-1]))
    assert [s["path"] for s in states] == ["kernels", "kernels"]
    assert states[0]["library"] == states[1]["library"] == str(cache / box.name)
    assert box.compiles() == 1
    assert _files(cache) == [box.name, f"{box.name}.lock"]  # no .part


def test_a_build_killed_midway_is_cleaned_up_by_the_next(box):
    cache = box.folder("cache")
    env = box.env(CHARLM_KERNEL_DIR=str(cache))
    # Killed with its compiler while compiling, as by a container's stop or a job's time
    # limit: the half-written .part file stays behind.
    child = box.start({**env, "FAKE_CXX_SECONDS": "120"}, start_new_session=True)
    deadline = time.monotonic() + 120
    while not box.compiles():
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.communicate()
    leftovers = list(cache.glob("*.part"))
    assert len(leftovers) == 1 and not (cache / box.name).exists()
    state = box.status(env)  # the next build removes it
    assert (state["path"], state["library"]) == ("kernels", str(cache / box.name))
    assert box.compiles() == 2 and _files(cache) == [box.name, f"{box.name}.lock"]


def test_a_failed_build_still_finds_one_made_earlier_in_the_private_folder(box):
    cache, temporary = box.folder("cache"), box.folder("tmp")
    private = temporary / f"charlm-kernels-{os.getuid()}"
    private.mkdir(mode=0o700)
    shutil.copy(box.library, private / box.name)  # built there once, when the cache was not
    state = box.status(box.env(CXX="/bin/false", CHARLM_KERNEL_DIR=str(cache),
                               TMPDIR=str(temporary)))
    assert (state["path"], state["library"]) == ("kernels", str(private / box.name))
    # without it, the compiler's failure is the reason, and no folder is made for nothing
    (private / box.name).unlink()
    private.rmdir()
    state = box.status(box.env(CXX="/bin/false", CHARLM_KERNEL_DIR=str(cache),
                               TMPDIR=str(temporary)))
    assert state["path"] == "keras" and state["reason"].startswith("/bin/false failed")
    assert not private.exists()


def test_loading_the_kernels_leaves_denormals_alone():
    # A library built with -ffast-math by GCC < 13 switched the loading thread to flush
    # denormals to zero on load: every float of the process (numpy's, Python's) after it.
    assert kernels.ops() is not None
    assert np.float32(1e-38) / np.float32(100) > 0
    assert 1e-310 / 10 > 0
