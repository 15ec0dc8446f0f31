"""The accelerator path, proven on a CPU: loss scaling, cuDNN eligibility, several devices,
exact resume, and the steps-per-call loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from charlm import devices
from charlm.config import ModelConfig, TrainConfig
from charlm.data import Corpus
from charlm.model import build_model, cudnn_problems, recurrent_layers
from charlm.optim import make_optimizer, uses_float16
from charlm.train import Callback, fit, steps_per_call
from storage.checkpoints import CheckpointDir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpora():
    from charlm.demo_corpus import make_corpus

    texts = [t for _, t in make_corpus(700, np.random.default_rng(11))]
    return Corpus.from_texts(texts[:640]), Corpus.from_texts(texts[640:])


def test_mixed_float16_gets_loss_scaling():
    model = build_model(ModelConfig(hidden=16, depth=1, embedding=8), precision="mixed_float16")
    # The defect: the functional model's own policy is float32, only its layers are mixed.
    assert model.dtype_policy.name == "float32"
    assert uses_float16(model)
    optimizer = make_optimizer(model, TrainConfig())
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    for precision in ("float32", "mixed_bfloat16"):
        plain = build_model(ModelConfig(hidden=16, depth=1, embedding=8), precision=precision)
        assert not isinstance(make_optimizer(plain, TrainConfig()),
                              keras.optimizers.LossScaleOptimizer)


def test_mixed_float16_learns_like_float32(corpora):
    train, valid = corpora
    config = TrainConfig(batch_size=32, epochs=3, learning_rate=0.01, min_learning_rate=0.002,
                         seed=3)
    scores = {}
    for precision in ("float32", "mixed_float16"):
        model = build_model(ModelConfig(cell="lstm", hidden=32, depth=2, embedding=16,
                                        dropout=0.0, seed=3), precision=precision)
        scores[precision] = fit(model, train, valid, config).best_validation_bpc
    assert scores["float32"] < 4.5  # it learned (6.9 untrained)
    assert scores["mixed_float16"] == pytest.approx(scores["float32"], abs=0.02)


def test_default_layers_meet_every_cudnn_condition():
    for cell in ("gru", "lstm"):
        model = build_model(ModelConfig(cell=cell, hidden=8, depth=3, embedding=4))
        for layer in recurrent_layers(model):
            assert cudnn_problems(layer) == [], (cell, layer.name)
            assert layer.dropout == 0 and layer.recurrent_dropout == 0
    article = build_model(ModelConfig(cell="gru", hidden=8, gru_variant="article"))
    assert cudnn_problems(recurrent_layers(article)[0]) == [
        "reset_after is False (the article's GRU variant)"]
    rnn = build_model(ModelConfig(cell="rnn", hidden=8))
    assert cudnn_problems(recurrent_layers(rnn)[0]) == ["SimpleRNN has no cuDNN kernel"]
    # each condition is really checked
    layer = keras.layers.LSTM(4, activation="relu", recurrent_activation="tanh",
                              use_bias=False, unroll=True, recurrent_dropout=0.1)
    assert len(cudnn_problems(layer)) == 5


def test_on_a_gpu_cudnn_is_required_not_hoped_for(monkeypatch, caplog):
    import charlm.model

    monkeypatch.setattr(charlm.model, "gpu_available", lambda: True)
    model = build_model(ModelConfig(cell="lstm", hidden=8, depth=2, embedding=4))
    assert [layer.use_cudnn for layer in recurrent_layers(model)] == [True, True]
    # Here (no GPU) the cuDNN kernel is missing: an error, not a silent generic loop.
    with pytest.raises(ValueError, match="use_cudnn=True"):
        model(np.zeros((2, 5), dtype=np.int64))
    with caplog.at_level("WARNING", logger="charlm"):
        article = build_model(ModelConfig(cell="gru", hidden=8, gru_variant="article"))
    assert recurrent_layers(article)[0].use_cudnn is not True
    assert "runs without cuDNN" in caplog.text and "reset_after" in caplog.text


def test_no_gpu_means_no_cudnn_attempt():
    model = build_model(ModelConfig(cell="gru", hidden=8, depth=2))
    assert [layer.use_cudnn for layer in recurrent_layers(model)] == [False, False]


def test_parse_devices():
    assert devices.parse_devices("3") == 3 and devices.parse_devices(2) == 2
    assert devices.parse_devices(" ALL ") == "all"
    for bad in ("0", "-1", "two", 0, True, "1.5"):
        with pytest.raises(ValueError, match="devices must be"):
            devices.parse_devices(bad)
    assert devices.replica_count("all") == 1  # no GPU here


def test_steps_per_call_trains_the_same(corpora):
    train, valid = corpora
    results = []
    for steps in (1, 7, 0):  # 0: as many as fit in CALL_SECONDS
        model = build_model(ModelConfig(cell="gru", hidden=16, depth=1, embedding=8,
                                        dropout=0.0, seed=4))
        config = TrainConfig(batch_size=32, epochs=2, learning_rate=0.01, seed=4,
                             steps_per_call=steps, max_minutes=10_000)
        results.append(fit(model, train, valid, config))
    one, *others = results
    for other in others:
        assert one.steps == other.steps == 2 * 20
        assert one.characters == other.characters == 2 * train.characters
        assert [h["validation_bpc"] for h in other.history] == pytest.approx(
            [h["validation_bpc"] for h in one.history], rel=1e-6)


def test_automatic_steps_per_call_fill_a_quarter_second():
    auto = TrainConfig()
    assert auto.steps_per_call == 0
    assert steps_per_call(auto, None, 50) == 1  # nothing measured yet
    assert steps_per_call(auto, 0.035, 50) == 7  # a 35 ms step
    assert steps_per_call(auto, 2.0, 50) == 1  # long steps: one a call
    assert steps_per_call(auto, 0.035, 3) == 3  # never past the loss's next read-back ...
    assert steps_per_call(auto, 1e-5, 500) == 64  # ... nor over 64
    assert steps_per_call(TrainConfig(steps_per_call=3), 0.001, 1) == 3  # a fixed count wins
    with pytest.raises(ValueError, match="steps_per_call"):
        TrainConfig(steps_per_call=-1)


class StopAfter(Callback):
    """Simulates a crash: raises once `steps` steps were reported."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_batch_end(self, step, logs):
        if step >= self.steps:
            raise KeyboardInterrupt


def test_resume_mid_epoch_is_exact(tmp_path, corpora):
    train, valid = corpora
    # one step a call, so a checkpoint follows every step and the crash lands mid-epoch
    config = TrainConfig(batch_size=32, epochs=2, learning_rate=0.01, seed=5, report_every=1,
                         checkpoint_minutes=1e-9, max_minutes=10_000, ema=0.9,
                         steps_per_call=1)
    shape = ModelConfig(cell="gru", hidden=16, depth=2, embedding=8, dropout=0.2, seed=5)

    whole = build_model(shape)
    expected = fit(whole, train, valid, config)

    checkpoint = CheckpointDir(tmp_path / "ckpt")
    crashed = build_model(shape)
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, train, valid, config, callbacks=[StopAfter(27)], checkpoint=checkpoint,
            fingerprint="run")
    state = checkpoint.state()
    assert (state["epoch"], state["batch"]) == (1, 6)  # 27 steps = 20 + 7; saved after 26
    resumed_model = build_model(shape)
    resumed = fit(resumed_model, train, valid, config, checkpoint=checkpoint,
                  fingerprint="run")
    assert resumed.resumed_from == {"epoch": 1, "batch": 6, "step": 26}
    assert resumed.steps == expected.steps and resumed.characters == expected.characters
    # dropout RNG, optimizer slots, weight averages, step counter and batch order all
    # resumed: bit for bit
    assert [h["validation_bpc"] for h in resumed.history] == [
        h["validation_bpc"] for h in expected.history]
    for a, b in zip(resumed_model.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


MULTI = r"""
import json, sys
import numpy as np
from charlm import devices
strategy = devices.make_strategy(int(sys.argv[1]))
from charlm.config import ModelConfig, TrainConfig
from charlm.data import Corpus
from charlm.demo_corpus import make_corpus
from charlm.model import build_model
from charlm.train import fit
import charlm.train

if sys.argv[2] == "keras-reduce":  # Keras' own order: clip each replica's share, then sum
    make = charlm.train.make_optimizer
    def keras_order(model, config):
        optimizer = make(model, config)
        del optimizer.__dict__["_all_reduce_sum_gradients"]
        return optimizer
    charlm.train.make_optimizer = keras_order
texts = [t for _, t in make_corpus(700, np.random.default_rng(11))]
train, valid = Corpus.from_texts(texts[:640]), Corpus.from_texts(texts[640:])
with strategy.scope():
    model = build_model(ModelConfig(cell="gru", hidden=16, depth=2, embedding=8,
                                    dropout=float(sys.argv[3]), seed=6))
config = TrainConfig(batch_size=30, epochs=2, learning_rate=0.02, clip_norm=0.5, seed=6,
                     max_minutes=10_000)
result = fit(model, train, valid, config, strategy=strategy)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "steps": result.steps,
                  "characters": result.characters,
                  "bpc": [h["validation_bpc"] for h in result.history]}))
"""


def _multi(devices_: int, mode: str = "ours", dropout: float = 0.0) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", MULTI, str(devices_), mode, str(dropout)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_logical_devices_train_like_one():
    one, two, three = _multi(1), _multi(2), _multi(3)
    assert (one["replicas"], two["replicas"], three["replicas"]) == (1, 2, 3)
    assert one["steps"] == two["steps"] == three["steps"]
    assert one["characters"] == two["characters"] == three["characters"]
    assert two["bpc"] == pytest.approx(one["bpc"], abs=1e-4)
    assert three["bpc"] == pytest.approx(one["bpc"], abs=1e-4)
    # Keras' order (clipping each replica's share before the sum) trains differently:
    # this is what the gradient all-reduce in the train step fixes.
    keras_order = _multi(2, "keras-reduce")
    assert abs(keras_order["bpc"][-1] - one["bpc"][-1]) > 1e-3
    # dropout runs under the strategy too; masks differ, the learning does not
    dropped_one, dropped_two = _multi(1, dropout=0.2), _multi(2, dropout=0.2)
    assert dropped_two["bpc"][-1] < dropped_two["bpc"][0] < 6.9
    assert dropped_two["bpc"] == pytest.approx(dropped_one["bpc"], abs=0.02)


def test_ema_validates_and_keeps_the_averaged_weights(corpora):
    from charlm.evaluate import evaluate

    train, valid = corpora
    shape = ModelConfig(cell="gru", hidden=16, depth=1, embedding=8, dropout=0.0, seed=7)
    runs = {}
    for ema in (0.0, 0.95):
        model = build_model(shape)
        config = TrainConfig(batch_size=32, epochs=2, learning_rate=0.02, seed=7, ema=ema,
                             max_minutes=10_000)
        result = fit(model, train, valid, config)
        # the model ends with the weights that were validated: the averages when ema > 0
        assert evaluate(model, valid)["bits_per_char"] == pytest.approx(
            result.best_validation_bpc, rel=1e-6)
        runs[ema] = result
    # same updates, other weights scored: the averages differ from the raw weights
    assert runs[0.95].history[-1]["train_bpc"] == pytest.approx(
        runs[0.0].history[-1]["train_bpc"], rel=1e-6)
    assert runs[0.95].best_validation_bpc != pytest.approx(runs[0.0].best_validation_bpc,
                                                           abs=1e-4)
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)
