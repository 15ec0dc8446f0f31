"""Which recurrent path trained a model (charlm.kernels.status), as `train_model` logs it
before the first epoch and records it with the model (config file, manifest summary, the
training report's table); and a NaN met in training publishes nothing, on either path."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pytest

from charlm import kernels
from charlm.config import ModelConfig, TrainConfig
from charlm.model import build_model, recurrent_layers, save_model
from charlm.train import TrainingError
from storage import Store
from storage.layout import ModelFiles
from tasks.report import model_row, train_report_markdown
from tasks.train import train_model

NETWORK = ModelConfig(cell="gru", hidden=8, depth=1, embedding=4, dropout=0.0)
TRAINING = TrainConfig(epochs=1, max_minutes=0.2, batch_size=32)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with one small dataset."""
    from charlm.demo_corpus import make_corpus
    from tasks.ingest import ingest_csvs

    root = tmp_path_factory.mktemp("paths")
    csv = root / "headlines.csv"
    rows = make_corpus(300, np.random.default_rng(4))
    pl.DataFrame(rows, schema=["publish_date", "headline_text"], orient="row").write_csv(csv)
    storage = str(root / "store")
    ingest_csvs.fn(storage, [str(csv)])
    return storage


class Records(logging.Handler):
    """The records of the `charlm` logger, which `train_model` logs to outside a Prefect run
    (the command line may have stopped it propagating to pytest's handler)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        logger = logging.getLogger("charlm")
        self.level = logger.level
        logger.setLevel(logging.INFO)  # as the command line sets it
        logger.addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logger = logging.getLogger("charlm")
        logger.removeHandler(self)
        logger.setLevel(self.level)

    def before_first_epoch(self) -> list[tuple[int, str]]:
        messages = [(r.levelno, r.getMessage()) for r in self.records]
        first = next(i for i, (_, m) in enumerate(messages) if m.startswith("epoch 1:"))
        return messages[:first]


def _trained(storage: str, precision: str = "float32") -> tuple[object, Records]:
    with Records() as records:
        outcome = train_model.fn(storage, "latest", NETWORK, TRAINING, precision=precision)
    return outcome, records


def test_training_logs_and_records_its_recurrent_path(store):
    expected = kernels.status("float32", "gru")  # kernels where a compiler is, else keras
    outcome, records = _trained(store)
    lines = records.before_first_epoch()
    assert lines[0][1].startswith("dataset ")  # the first lines: dataset, then the path
    level = logging.WARNING if expected.fallback else logging.INFO
    assert lines[1][0] == level and lines[1][1].startswith(
        f"recurrent path: {expected.describe()}")
    if expected.path == "kernels":
        assert expected.library in lines[1][1]  # where the build is, and its CPU features
        assert " ".join(expected.cpu_features) in lines[1][1]
    assert outcome.recurrent == expected
    model = Store(store).manifest("models", outcome.model_id)
    assert model["summary"]["recurrent"] == expected.to_dict()
    config = json.loads(ModelFiles.at(Store(store).path("models", outcome.model_id))
                        .config.read_text())
    assert config["recurrent"] == expected.to_dict()
    row = model_row(store, outcome.model_id, None)
    assert row.recurrent == expected.describe()
    report = train_report_markdown("ds", row, None, True, [])
    assert f"| recurrent path | {expected.describe()} |" in report


def test_training_on_kernels_turned_off_warns_before_the_first_epoch(store, monkeypatch):
    monkeypatch.setenv("CHARLM_KERNELS", "0")
    outcome, records = _trained(store)
    warning = ("recurrent path: keras, float32: turned off by CHARLM_KERNELS=0 (about 2x "
               "slower); `charlm kernels` says more")
    assert (logging.WARNING, warning) in records.before_first_epoch()
    recorded = Store(store).manifest("models", outcome.model_id)["summary"]["recurrent"]
    assert recorded["path"] == "keras" and recorded["fallback"]
    assert recorded["reason"] == "turned off by CHARLM_KERNELS=0 (about 2x slower)"
    report = train_report_markdown("ds", model_row(store, outcome.model_id, None), None, True,
                                   [])
    assert ("| recurrent path | keras, float32: turned off by CHARLM_KERNELS=0 (about 2x "
            "slower) |") in report


def test_the_report_shows_a_model_without_a_recorded_path_and_escapes_pipes(storage, publish):
    old = publish("models")  # trained before the path was recorded
    row = model_row(storage, old, None)
    assert row.recurrent is None
    assert "| recurrent path | - |" in train_report_markdown("ds", row, None, True, [])
    piped = kernels.KernelStatus("keras", "float32", "g++ failed: a | b", True)
    new = publish("models", summary={"recurrent": piped.to_dict()})
    text = train_report_markdown("ds", model_row(storage, new, None), None, True, [])
    assert "| recurrent path | keras, float32: g++ failed: a \\| b |" in text


@pytest.mark.parametrize("path", ["kernels", "keras"])
def test_a_nan_weight_stops_training_and_publishes_nothing(store, path, monkeypatch):
    if path == "keras":
        monkeypatch.setenv("CHARLM_KERNELS", "0")
    elif kernels.status("float32", "gru").path != "kernels":
        pytest.skip("no kernels here")
    # A model whose recurrent kernel holds one NaN, as training would start from it.
    model = build_model(NETWORK)
    weight = recurrent_layers(model)[0].cell.recurrent_kernel
    value = weight.numpy()
    value[1, 2] = np.nan
    weight.assign(value)
    storage = Store(store)
    with storage.publish("models", parents={"datasets": [storage.resolve("datasets", "latest")]},
                         params={"model": {}}) as staging:
        save_model(model, NETWORK, ModelFiles.at(staging.path))
    before = [m["id"] for m in storage.versions("models")]
    with Records() as records, pytest.raises(TrainingError, match="loss became nan"):
        train_model.fn(store, "latest", NETWORK, TRAINING, precision="float32",
                       start_from=staging.id)
    assert [m["id"] for m in storage.versions("models")] == before  # nothing published
    said = [r.getMessage() for r in records.records
            if r.getMessage().startswith("recurrent path")]
    assert len(said) == 1 and said[0].startswith(f"recurrent path: {path}, float32")
