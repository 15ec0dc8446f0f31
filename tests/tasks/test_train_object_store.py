"""Training on an S3 store (moto's server) resumes on another machine: each checkpoint
uploads the run's work directory, so a run that crashes after its first epoch continues
from there on a host with an empty cache, and its work directory is gone once the model is
published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charlm.config import ModelConfig, TrainConfig
from charlm.train import Callback
from cli.main import main
from storage import Store
from storage.layout import ModelFiles
from tasks.train import train_model

NETWORK = ModelConfig(cell="gru", hidden=8, depth=1, embedding=4)
TRAINING = TrainConfig(epochs=2, max_minutes=2.0, batch_size=32)


class CrashAfterCheckpoint(Callback):
    def on_checkpoint(self, logs: dict) -> None:
        raise RuntimeError("the machine died")


@pytest.mark.slow
def test_a_crashed_training_resumes_on_another_host(s3_store_url, tmp_path, monkeypatch,
                                                     csv_file) -> None:
    rows = b"".join(b"2024050%d,headline number %d of the day\n" % (1 + n % 9, n)
                    for n in range(600))
    assert main(["--storage", s3_store_url, "ingest", str(csv_file(tmp_path, "h.csv", rows))]) == 0
    with pytest.raises(RuntimeError, match="machine died"):
        train_model.fn(s3_store_url, network=NETWORK, training=TRAINING,
                       callbacks=[CrashAfterCheckpoint()])
    store = Store(s3_store_url)
    assert [i.key for i in store.backend.list(".work/")], "no work directory was saved"
    assert store.versions("models") == []

    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "another-host"))
    outcome = train_model.fn(s3_store_url, network=NETWORK, training=TRAINING)
    config = json.loads(Path(ModelFiles.at(Store(s3_store_url).path(
        "models", outcome.model_id)).config).read_text())
    assert config["result"]["resumed_from"] is not None, config["result"]
    assert outcome.epochs == 2
    assert [i.key for i in store.backend.list(".work/")] == []
