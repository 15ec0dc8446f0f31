import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from charlm.config import TrainConfig
from charlm.data import Corpus
from charlm.evaluate import evaluate
from charlm.optim import learning_rate
from charlm.train import Callback, TrainingError, fit
from storage.checkpoints import CheckpointDir
from storage.layout import CheckpointFiles, TrainingWorkFiles

REPO = Path(__file__).resolve().parents[2]
STOPPED = {"epochs", "early_stopping", "time_budget"}


def checkpoint_state(work: Path) -> Path:
    """The state file of the newest checkpoint in a training work directory."""
    return CheckpointFiles.at(TrainingWorkFiles.at(work).checkpoint).state


@pytest.fixture(scope="module")
def corpora():
    from charlm.demo_corpus import make_corpus

    texts = [t for _, t in make_corpus(300, np.random.default_rng(7))]
    return Corpus.from_texts(texts[:260]), Corpus.from_texts(texts[260:])


class Recorder(Callback):
    def __init__(self):
        self.batches, self.epochs, self.ends, self.begin, self.checkpoints = [], [], [], [], []

    def on_train_begin(self, info):
        self.begin.append(info)

    def on_batch_end(self, step, logs):
        self.batches.append((step, logs))

    def on_epoch_end(self, epoch, logs):
        self.epochs.append((epoch, logs))

    def on_checkpoint(self, logs):
        self.checkpoints.append(logs)

    @property
    def steps(self):
        """Steps reported so far (each call reports the steps since the previous one)."""
        return sum(logs["steps"] for _, logs in self.batches)

    def on_train_end(self, result):
        self.ends.append(result)


def test_loss_decreases(tiny_model, corpora):
    train, valid = corpora
    model, _ = tiny_model(cell="gru", hidden=32, embedding=16, seed=1)
    before = evaluate(model, valid)["bits_per_char"]
    assert before > 6.0  # about log2(118) untrained
    rec = Recorder()
    config = TrainConfig(batch_size=16, epochs=4, learning_rate=0.03, min_learning_rate=0.01,
                         patience=4, seed=1, report_every=5)
    result = fit(model, train, valid, config, callbacks=[rec])
    assert result.stopped == "epochs"
    assert len(result.history) == 4
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["train_bpc"] < result.history[0]["train_bpc"] - 1.0
    assert result.best_validation_bpc < before - 1.5
    per_epoch = math.ceil(len(train) / 16)
    assert result.steps == 4 * per_epoch == rec.steps
    # read back every 5 steps and at each epoch's end, never per step
    assert 4 * math.ceil(per_epoch / 5) <= len(rec.batches) < result.steps
    assert all(1 <= logs["steps"] <= 5 for _, logs in rec.batches)
    assert [logs["batch"] for _, logs in rec.batches if logs["epoch"] == 1][-1] == per_epoch
    assert result.characters == 4 * train.characters
    assert rec.begin[0]["batches_per_epoch"] == per_epoch and rec.ends == [result]
    # the model ends with the best weights seen on validation
    after = evaluate(model, valid)["bits_per_char"]
    assert after == pytest.approx(result.best_validation_bpc, rel=1e-5)
    assert result.history[result.best_epoch - 1]["validation_bpc"] == result.best_validation_bpc


def test_early_stopping_when_validation_cannot_improve(tiny_model, corpora):
    train, valid = corpora
    model, _ = tiny_model(seed=2)
    # updates of ~1e-30 cannot move float32 weights: validation stays exactly the same
    config = TrainConfig(batch_size=64, epochs=10, learning_rate=1e-30,
                         min_learning_rate=1e-30, patience=1, seed=2,
                         ema=0.0)  # an average's float32 rounding would move validation
    result = fit(model, train, valid, config)
    assert result.stopped == "early_stopping"
    # Epochs 2-4 end before half of the schedule (progress 0.2-0.4): not counted; epoch 5
    # (0.5) is the first one that is, and patience 1 stops there.
    assert [h["progress"] for h in result.history] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert len(result.history) == 5 and result.best_epoch == 1
    assert len({h["validation_bpc"] for h in result.history}) == 1


def test_time_budget(tiny_model, corpora):
    train, valid = corpora
    model, _ = tiny_model(seed=3)
    config = TrainConfig(batch_size=16, epochs=50, max_minutes=1e-4, seed=3)
    result = fit(model, train, valid, config)
    assert result.stopped == "time_budget"
    assert result.steps == 1
    assert len(result.history) == 1 and result.history[0]["complete"] is False
    assert result.stopped in STOPPED


def test_nan_weights_raise_training_error(tmp_path, tiny_model, corpora):
    train, valid = corpora
    model, _ = tiny_model(seed=4)
    model.set_weights([np.full(w.shape, np.nan, w.dtype) for w in model.get_weights()])
    ckpt = tmp_path / "ckpt"
    with pytest.raises(TrainingError) as info:
        fit(model, train, valid, TrainConfig(batch_size=64, epochs=1),
            checkpoint=CheckpointDir(ckpt))
    message = str(info.value)
    assert "nan" in message.lower() and "checkpoint" in message and str(ckpt) in message
    assert not checkpoint_state(ckpt).exists()  # nothing bad was saved
    with pytest.raises(TrainingError, match="checkpoint"):
        fit(model, train, valid, TrainConfig(batch_size=64, epochs=1))


def test_rejects_empty_corpora(tiny_model, corpora):
    train, valid = corpora
    model, _ = tiny_model()
    empty = Corpus.from_texts([])
    with pytest.raises(ValueError):
        fit(model, empty, valid, TrainConfig())
    with pytest.raises(ValueError):
        fit(model, train, empty, TrainConfig())


def test_learning_rate_schedule():
    config = TrainConfig(learning_rate=1e-2, min_learning_rate=1e-4)
    assert learning_rate(config, 0.0, 0) == pytest.approx(1e-2 / 100)  # warm-up
    assert learning_rate(config, 0.0, 10_000) == pytest.approx(1e-2)
    assert learning_rate(config, 1.0, 10_000) == pytest.approx(1e-4)
    assert learning_rate(config, 2.0, 10_000) == pytest.approx(1e-4)
    mid = learning_rate(config, 0.5, 10_000)
    assert 1e-4 < mid < 1e-2


def test_checkpoint_of_another_run_starts_over(tmp_path, tiny_model, corpora):
    train, valid = corpora
    config = TrainConfig(batch_size=32, epochs=1, learning_rate=0.1, seed=5)
    ckpt = tmp_path / "ckpt"
    model, _ = tiny_model(seed=6)
    first = fit(model, train, valid, config, checkpoint=CheckpointDir(ckpt),
                fingerprint="run-a")
    per_epoch = math.ceil(len(train) / 32)
    state = json.loads(checkpoint_state(ckpt).read_text())
    assert (state["epoch"], state["batch"], state["fingerprint"]) == (1, 0, "run-a")

    # same fingerprint: nothing left to do, resumed at the end of epoch 1
    model, _ = tiny_model(seed=6)
    again = fit(model, train, valid, config, checkpoint=CheckpointDir(ckpt),
                fingerprint="run-a")
    assert again.resumed_from == {"epoch": 1, "batch": 0, "step": per_epoch}
    assert again.steps == per_epoch and again.history == first.history

    # another fingerprint: a fresh run from the given model, the same as the first run
    # (not from run-a's trained weights and optimizer slots)
    model, _ = tiny_model(seed=6)
    other = fit(model, train, valid, config, checkpoint=CheckpointDir(ckpt),
                fingerprint="run-b")
    assert other.resumed_from is None
    assert other.steps == per_epoch
    assert other.history[0]["validation_bpc"] == pytest.approx(
        first.history[0]["validation_bpc"], rel=1e-4)
    state = json.loads(checkpoint_state(ckpt).read_text())
    assert state["fingerprint"] == "run-b"


RESUME_CONFIG = dict(batch_size=8, epochs=40, max_minutes=10.0, learning_rate=0.01,
                     checkpoint_minutes=0.005, patience=100, seed=8, report_every=1)

TRAINER = """
import sys
import numpy as np
from charlm.config import ModelConfig, TrainConfig
from charlm.data import Corpus
from charlm.demo_corpus import make_corpus
from charlm.model import build_model
from charlm.train import fit
from storage.checkpoints import CheckpointDir

texts = [t for _, t in make_corpus(700, np.random.default_rng(8))]
train, valid = Corpus.from_texts(texts[:640]), Corpus.from_texts(texts[640:])
model = build_model(ModelConfig(cell="gru", hidden=16, depth=1, embedding=8, dropout=0.0,
                                seed=8), precision="float32")
fit(model, train, valid, TrainConfig(**{config}), checkpoint=CheckpointDir(sys.argv[1]),
    fingerprint="resume-test")
"""


@pytest.mark.slow
def test_resume_after_kill(tmp_path, tiny_model):
    from charlm.demo_corpus import make_corpus

    ckpt = tmp_path / "ckpt"
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(TRAINER.format(config=repr(RESUME_CONFIG))))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint_state(ckpt).exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # let it go on training and checkpointing for a moment
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # the checkpoint fit() will read: "checkpoint", or "checkpoint.old" when killed mid-swap
    work = TrainingWorkFiles.at(ckpt)
    saved = next(CheckpointFiles.at(folder) for folder in (work.checkpoint,
                                                           work.previous_checkpoint)
                 if CheckpointFiles.at(folder).state.exists())
    state = json.loads(saved.state.read_text())
    assert state["fingerprint"] == "resume-test"
    epoch, batch, steps = state["epoch"], state["batch"], state["result"]["steps"]
    per_epoch = math.ceil(640 / RESUME_CONFIG["batch_size"])
    assert steps == epoch * per_epoch + batch and steps > 0

    texts = [t for _, t in make_corpus(700, np.random.default_rng(8))]
    train, valid = Corpus.from_texts(texts[:640]), Corpus.from_texts(texts[640:])
    model, _ = tiny_model(cell="gru", hidden=16, depth=1, embedding=8, seed=8)
    # train the rest of the checkpoint's epoch (and one more if it had no batch left)
    epochs = epoch + (1 if batch < per_epoch else 2)
    config = TrainConfig(**{**RESUME_CONFIG, "epochs": epochs})
    rec = Recorder()
    result = fit(model, train, valid, config, callbacks=[rec], checkpoint=CheckpointDir(ckpt),
                 fingerprint="resume-test")
    assert result.resumed_from == {"epoch": epoch, "batch": batch, "step": steps}
    assert rec.begin[0]["resumed_from"] == result.resumed_from
    # it continues from the checkpoint's batch: exactly the remaining batches are trained
    assert result.steps > steps
    assert result.steps == epochs * per_epoch == steps + rec.steps
    assert rec.batches[0][0] == steps + 1  # report_every=1: the first report is one step on
    assert rec.batches[0][1]["batch"] == (batch + 1 if batch < per_epoch else 1)
    assert [h["epoch"] for h in result.history] == list(range(1, epochs + 1))
    assert result.seconds >= state["result"]["seconds"]
    assert result.stopped == "epochs"
