"""tasks.drift: the champion scored on exactly the new rows of a dataset version, and the
trend across versions computed from the store alone."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from charlm.data import Corpus
from charlm.evaluate import evaluate
from charlm.model import load_model
from charlm.quality import unseen_words
from storage import Store
from storage.datasets import read_texts
from storage.layout import DriftTrendFiles, EvaluationFiles, ModelFiles
from tasks.drift import (
    BATCH,
    DRIFT,
    DRIFT_ALIAS,
    TREND,
    TREND_ALIAS,
    drift_points,
    publish_drift_trend,
    record_drift,
)
from tasks.evaluate import evaluate_model
from tasks.ingest import ingest_csvs

FIRST = b"".join(f"200302{19 + i % 9},police probe crash {i}\n".encode() for i in range(80))
# Two rows already in FIRST (duplicates), new rows with the unseen word "zebra" three times.
SECOND = (b"20030219,police probe crash 0\n20030220,police probe crash 1\n"
          b"20030301,zebra escapes zoo\n20030301,police probe zebra\n"
          b"20030302,zebra crossing council plan\n20030302,police probe crash 5\n")
SECOND_NEW = ["zebra escapes zoo", "police probe zebra", "zebra crossing council plan",
              "police probe crash 5"]  # "crash 5" is new on that date


@pytest.fixture
def ingest(storage, tmp_path, csv_file):
    def _ingest(name: str, body: bytes):
        return ingest_csvs.fn(storage, [str(csv_file(tmp_path, name, body))])

    return _ingest


def bpc_of(storage: str, model_id: str, texts: list[str]) -> float:
    net, _ = load_model(ModelFiles.at(Store(storage).path("models", model_id)))
    return evaluate(net, Corpus.from_texts(texts))["bits_per_char"]


def test_drift_is_measured_on_exactly_the_new_rows(storage, ingest, publish_model):
    first = ingest("first.csv", FIRST)
    champion = publish_model(storage, first.dataset_id)
    second = ingest("second.csv", SECOND)
    assert second.new_rows == len(SECOND_NEW) and second.duplicates == 2

    drift = record_drift(storage, second.dataset_id)
    assert drift is not None
    assert (drift.dataset_id, drift.model_id) == (second.dataset_id, champion)
    assert drift.new_rows == second.new_rows
    assert drift.bits_per_char == pytest.approx(bpc_of(storage, champion, SECOND_NEW))
    store = Store(storage)
    trained_on = read_texts(store.path("datasets", first.dataset_id), "train")
    expected = unseen_words(SECOND_NEW, trained_on)
    assert drift.unseen_word_share == pytest.approx(expected["unseen_word_share"])
    assert drift.top_new_words[0] == ("zebra", 3)
    assert [list(w) for w in drift.top_new_words] == expected["top_unseen_words"]

    manifest = store.manifest("evaluations", drift.evaluation_id)
    assert manifest["parents"] == {"datasets": [second.dataset_id], "models": [champion]}
    assert manifest["params"][DRIFT] == BATCH and manifest["summary"][DRIFT] == BATCH
    assert manifest["summary"]["new_rows"] == 4
    assert manifest["summary"]["newest_date"] == "2003-03-02"
    assert store.resolve("evaluations", DRIFT_ALIAS) == drift.evaluation_id
    files = EvaluationFiles.at(store.path("evaluations", drift.evaluation_id))
    metrics = json.loads(files.metrics.read_text())
    assert metrics["headlines"] == 4 and metrics["previous_dataset"] == first.dataset_id
    assert (metrics["first_date"], metrics["last_date"]) == ("2003-03-01", "2003-03-02")
    assert "| zebra | 3 |" in files.report.read_text()


def test_nothing_is_recorded_without_a_champion_or_for_its_own_dataset(storage, ingest,
                                                                       publish_model):
    first = ingest("first.csv", FIRST)
    assert record_drift(storage, first.dataset_id) is None  # no champion yet
    publish_model(storage, first.dataset_id)
    assert record_drift(storage, first.dataset_id) is None  # it was trained on this one
    assert Store(storage).versions("evaluations") == []


def test_a_scoring_failure_is_logged_in_one_line_and_never_raised(storage, ingest,
                                                                  publish_model, caplog):
    first = ingest("first.csv", FIRST)
    champion = publish_model(storage, first.dataset_id)
    weights = ModelFiles.at(Store(storage).path("models", champion)).weights
    os.chmod(weights, stat.S_IRUSR | stat.S_IWUSR)
    weights.write_bytes(b"not weights")  # the store's checksum check refuses the model
    second = ingest("second.csv", SECOND)
    logger = logging.getLogger("charlm")  # `charlm` may not propagate (cli.main sets it up)
    logger.addHandler(caplog.handler)
    try:
        assert record_drift(storage, second.dataset_id) is None
    finally:
        logger.removeHandler(caplog.handler)
    # A set: the record reaches caplog twice when `charlm` also propagates to the root.
    [line] = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    assert line.startswith(f"charlm: drift not recorded for dataset {second.dataset_id}: ")
    assert "\n" not in line and "model.weights.h5" in line
    assert Store(storage).versions("evaluations") == []


def test_trend_points_come_from_the_store_alone(storage, ingest, publish_model):
    store = Store(storage)
    d1 = ingest("first.csv", FIRST).dataset_id
    m1 = publish_model(storage, d1)  # the first champion
    e1 = evaluate_model.fn(storage, m1, d1, "test", samples=0)
    d2 = ingest("second.csv", SECOND).dataset_id
    drift = record_drift(storage, d2)
    # A retrain on d2 that lost (m2), then one that won (m3), as train_challenger leaves them.
    m2 = publish_model(storage, d2, champion=False, seed=1)
    evaluate_model.fn(storage, m2, d2, "test", samples=0)
    kept = evaluate_model.fn(storage, m1, d2, "test", samples=0)
    m3 = publish_model(storage, d2, champion=False, seed=2)
    won = evaluate_model.fn(storage, m3, d2, "test", samples=0)
    store.set_alias("models", "champion", m3, reason="beat the champion")
    # A comparison run's model is not a retrain.
    m4 = publish_model(storage, d2, champion=False, seed=3)
    e4 = evaluate_model.fn(storage, m4, d2, "test", samples=0)
    with store.publish("evaluations", parents={"models": [m4]},
                       params={"comparison": True}) as staging:
        (staging.path / "comparison.json").write_text("[]")
    assert e4.evaluation_id  # evaluated, yet no point

    points = drift_points(storage)
    assert [(p["series"], p["model"], p["decision"]) for p in points] == [
        ("retrain", m1, "promoted"), ("new batch", m1, None),
        ("retrain", m1, f"kept over {m2}"), ("retrain", m3, "promoted")]
    assert [p["date"] for p in points] == ["2003-02-27"] + ["2003-03-02"] * 3
    assert [p["bits_per_char"] for p in points] == pytest.approx([
        e1.metrics["bits_per_char"], drift.bits_per_char, kept.metrics["bits_per_char"],
        won.metrics["bits_per_char"]])
    assert points[1]["headlines"] == 4 and points[1]["unseen_word_share"] == pytest.approx(
        drift.unseen_word_share)

    trend = publish_drift_trend.fn(storage)
    assert trend.points == points
    manifest = store.manifest("evaluations", trend.evaluation_id)
    assert manifest["params"][DRIFT] == TREND and manifest["summary"]["points"] == 4
    assert drift.evaluation_id in manifest["params"]["evaluations"]
    assert manifest["parents"] == {}  # a view of history: it pins nothing against gc
    assert store.resolve("evaluations", TREND_ALIAS) == trend.evaluation_id
    files = DriftTrendFiles.at(store.path("evaluations", trend.evaluation_id))
    assert json.loads(files.data.read_text()) == points
    assert files.plot.read_bytes()[:4] == b"\x89PNG"
    assert "](trend.png)" in files.table.read_text()
    # The trend is not itself a point of the next trend.
    assert drift_points(storage) == points


def test_no_trend_without_drift_or_retrain(storage, ingest):
    ingest("first.csv", FIRST)
    with pytest.raises(ValueError, match="no drift to show yet"):
        publish_drift_trend.fn(storage)
