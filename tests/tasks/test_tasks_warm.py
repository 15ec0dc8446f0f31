"""Warm starts (tasks.warm, tasks.train.train_model's start_from): the flow's rule, the
weights a warm run starts from, and exact resume of a warm run killed mid-training."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from charlm.config import ModelConfig, TrainConfig
from charlm.model import load_model
from storage import Store
from storage.layout import ModelFiles
from tasks.warm import choose_start, start_network

REPO = Path(__file__).resolve().parents[2]
NETWORK = ModelConfig(cell="gru", hidden=8, depth=1, embedding=4, dropout=0.0)
TRAINING = TrainConfig(epochs=1, max_minutes=0.2, batch_size=32)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with one dataset and a tiny champion trained on it."""
    from charlm.demo_corpus import make_corpus
    from tasks.champion import promote
    from tasks.ingest import ingest_csvs
    from tasks.train import train_model

    root = tmp_path_factory.mktemp("warm")
    csv = root / "headlines.csv"
    rows = make_corpus(400, np.random.default_rng(3))
    pl.DataFrame(rows, schema=["publish_date", "headline_text"], orient="row").write_csv(csv)
    storage = str(root / "store")
    ingest_csvs.fn(storage, [str(csv)])
    model_id = train_model.fn(storage, "latest", NETWORK, TRAINING).model_id
    promote.fn(storage, model_id, "test champion")
    return storage


def weights(storage: str, model_id: str) -> list[np.ndarray]:
    model, _ = load_model(ModelFiles.at(Store(storage).path("models", model_id)))
    return model.get_weights()


def test_choose_start_warms_only_from_a_champion_of_the_configured_network(store, tmp_path):
    champion = Store(store).resolve("models", "champion")
    start = choose_start(store, "champion", dataclasses.replace(NETWORK, seed=5))
    assert start.model_id == champion and start.label == f"warm from {champion}"
    assert choose_start(store, "none", NETWORK).model_id is None
    other = choose_start(store, "champion", dataclasses.replace(NETWORK, dropout=0.1))
    assert other.model_id is None and "dropout 0.0 -> 0.1" in other.reason
    empty = choose_start(str(tmp_path / "empty"), "champion", NETWORK)
    assert empty.model_id is None and "no champion" in empty.reason
    with pytest.raises(ValueError, match="'warm'"):
        choose_start(store, "warm", NETWORK)  # type: ignore[arg-type]
    # the command line's check: the model's network, with what does not fix the weights
    model_id, network = start_network(store, "champion", {"hidden": 8, "dropout": 0.2,
                                                          "seed": 3})
    assert model_id == champion and network == dataclasses.replace(NETWORK, dropout=0.2, seed=3)


def test_a_warm_run_starts_from_the_models_weights(store):
    from tasks.train import train_model

    champion = Store(store).resolve("models", "champion")
    # A peak so small that training barely moves the weights: what it starts from shows.
    still = dataclasses.replace(TRAINING, learning_rate=1e-9, warm_learning_rate=1e-9,
                                min_learning_rate=1e-10, weight_decay=0.0)
    warm = train_model.fn(store, "latest", dataclasses.replace(NETWORK, seed=9), still,
                          start_from="champion")
    cold = train_model.fn(store, "latest", dataclasses.replace(NETWORK, seed=9), still)
    assert warm.started_from == champion and cold.started_from is None
    parent = weights(store, champion)
    for a, b in zip(weights(store, warm.model_id), parent, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert max(np.abs(a - b).max() for a, b in zip(weights(store, cold.model_id), parent)) > 0.01
    with pytest.raises(ValueError, match=r"cannot start from model champion .*hidden 16"):
        train_model.fn(store, "latest", dataclasses.replace(NETWORK, hidden=16), TRAINING,
                       start_from="champion")


def test_recency_weighting_repeats_the_newest_days_training_headlines(store):
    """TrainConfig.recent_repeats: an epoch holds every training headline once and those of
    the newest recent_days days recent_repeats times in all (for nightly retrains)."""
    from charlm.data import Corpus
    from storage.datasets import read_texts
    from tasks.train import train_model

    s = Store(store)
    version = s.path("datasets", s.resolve("datasets", "latest"))
    everything = Corpus.from_texts(read_texts(version, "train")).characters
    recent = Corpus.from_texts(read_texts(version, "train", days=2)).characters
    assert 0 < recent < everything / 2
    one_epoch = dataclasses.replace(TRAINING, max_minutes=5.0, validation_limit=50)
    plain = train_model.fn(store, "latest", NETWORK, one_epoch).model_id
    weighted = train_model.fn(store, "latest", NETWORK, dataclasses.replace(
        one_epoch, recent_repeats=3, recent_days=2)).model_id
    trained = {m: s.manifest("models", m)["summary"]["characters"] for m in (plain, weighted)}
    assert trained == {plain: everything, weighted: everything + 2 * recent}
    with pytest.raises(ValueError, match="recent_repeats"):
        TrainConfig(recent_repeats=0)


WARM_TRAINER = """
import sys
from charlm.config import ModelConfig, TrainConfig
from tasks.train import train_model

train_model.fn(sys.argv[1], "latest", ModelConfig(**{network}), TrainConfig(**{training}),
               "float32", start_from=sys.argv[2])
"""
# One step per compiled call and per batch of one: two epochs take seconds even on a fast
# CPU, so the kill below lands between the first checkpoint and the run's end.
RESUME_TRAINING = dict(batch_size=1, epochs=2, max_minutes=10.0, checkpoint_minutes=0.005,
                       patience=100, report_every=1, steps_per_call=1, warm_learning_rate=1e-3)


@pytest.mark.slow
def test_a_killed_warm_run_resumes_from_its_checkpoint(store, tmp_path):
    from tasks.train import train_model

    champion = Store(store).resolve("models", "champion")
    network = dataclasses.asdict(NETWORK)
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(WARM_TRAINER.format(network=repr(network),
                                                          training=repr(RESUME_TRAINING))))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    before = [m["id"] for m in Store(store).versions("models")]
    proc = subprocess.Popen([sys.executable, str(script), store, champion], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(Path(store).glob(".work/train-*/checkpoint/state.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert [m["id"] for m in Store(store).versions("models")] == before  # nothing published
    [state_file] = list(Path(store).glob(".work/train-*/checkpoint/state.json"))
    state = json.loads(state_file.read_text())

    # The same call again resumes the warm run where its checkpoint left it.
    outcome = train_model.fn(store, "latest", NETWORK, TrainConfig(**RESUME_TRAINING),
                             "float32", start_from=champion)
    manifest = Store(store).manifest("models", outcome.model_id)
    assert manifest["parents"]["models"] == [champion]
    config = json.loads(ModelFiles.at(Store(store).path("models", outcome.model_id))
                        .config.read_text())
    result = config["result"]
    assert result["resumed_from"] == {"epoch": state["epoch"], "batch": state["batch"],
                                      "step": state["result"]["steps"]}
    from storage.datasets import read_texts

    train = read_texts(Store(store).path("datasets", "latest"), "train")
    per_epoch = -(-len(train) // RESUME_TRAINING["batch_size"])
    # exactly the batches the checkpoint had left: two whole epochs, none trained twice
    assert result["steps"] == 2 * per_epoch > state["result"]["steps"]
    assert [h["epoch"] for h in result["history"]] == [1, 2] and result["stopped"] == "epochs"
    assert not list(Path(store).glob(".work/train-*"))  # the work directory is gone
