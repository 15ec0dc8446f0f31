"""tasks.evaluate: scoring CSV files that were never ingested, and the recent view."""

from __future__ import annotations

import json

import pytest

from charlm.config import IngestConfig
from charlm.data import Corpus
from charlm.evaluate import evaluate
from charlm.model import load_model
from ingestion.reasons import IngestError
from storage import Store
from storage.datasets import read_view
from storage.fsutil import sha256_file
from storage.layout import EvaluationFiles, ModelFiles
from tasks.evaluate import evaluate_csvs, evaluate_model
from tasks.ingest import ingest_csvs

TRAINING_ROWS = b"".join(f"200302{19 + i % 9},Council News {i}\n".encode() for i in range(60))


@pytest.fixture
def model(storage, tmp_path, csv_file, publish_model) -> str:
    """A model whose training dataset was ingested lowercased, headlines of <= 40 chars."""
    csv = csv_file(tmp_path, "train.csv", TRAINING_ROWS)
    cleaning = IngestConfig(lowercase=True, max_headline_length=40)
    dataset = ingest_csvs.fn(storage, [str(csv)], cleaning).dataset_id
    return publish_model(storage, dataset)


def expected_bpc(storage: str, model_id: str, texts: list[str]) -> float:
    net, _ = load_model(ModelFiles.at(Store(storage).path("models", model_id)))
    return evaluate(net, Corpus.from_texts(texts))["bits_per_char"]


def test_csv_never_ingested_is_scored_cleaned_by_the_datasets_rules(storage, model, tmp_path,
                                                                    csv_file):
    store = Store(storage)
    datasets_before = store.versions("datasets")
    csv = csv_file(tmp_path, "october.csv", (
        b"20031001,Storm Hits   Coast\n"  # lowercased, spaces collapsed: as ingested
        b"20031001,storm hits coast\n"  # the same cleaned row: a duplicate
        b"20031002,Council News 3\n"  # also a training headline (once cleaned)
        b"2003-10-02,bad date\n"
        b"20031003," + b"x" * 41 + b"\n"  # longer than the dataset's 40
        b"20031003,Rain\n"))
    outcome = evaluate_csvs.fn(storage, model, [str(csv)], samples=0)
    metrics = outcome.metrics
    texts = ["storm hits coast", "council news 3", "rain"]
    assert metrics["headlines"] == 3
    assert metrics["bits_per_char"] == pytest.approx(expected_bpc(storage, model, texts))
    assert (metrics["rows_read"], metrics["duplicates"], metrics["quarantined_rows"]) == (6, 1, 2)
    assert metrics["quarantined_by_reason"] == {"bad date": 1,
                                                "longer than max_headline_length": 1}
    assert metrics["headlines_in_training"] == sum(
        t in read_view(store.path("datasets", metrics["training_dataset"]), "train")[
            "headline"].to_list() for t in texts)
    assert metrics["files"] == ["october.csv"] and metrics["dataset"] is None
    assert outcome.dataset_id is None and outcome.split is None

    manifest = store.manifest("evaluations", outcome.evaluation_id)
    assert manifest["parents"] == {"models": [model]}
    assert manifest["params"]["files"] == [{"path": str(csv.resolve()),
                                            "sha256": sha256_file(csv)}]
    assert manifest["params"]["ingest"]["lowercase"] is True
    assert manifest["summary"]["quarantined_rows"] == 2
    assert store.versions("datasets") == datasets_before  # nothing ingested
    files = EvaluationFiles.at(store.path("evaluations", outcome.evaluation_id))
    assert json.loads(files.metrics.read_text())["headlines"] == 3
    report = files.report.read_text()
    assert "Likelihood on october.csv" in report and "bad date: 1" in report


def test_several_csvs_and_sample_quality_against_the_training_split(storage, model, tmp_path,
                                                                     csv_file):
    a = csv_file(tmp_path, "a.csv", b"20031001,one story\n")
    b = csv_file(tmp_path, "b.csv", b"20031001,another story\n20031001,one story\n")
    outcome = evaluate_csvs.fn(storage, model, [str(a), str(b)], samples=5)
    metrics = outcome.metrics
    assert metrics["headlines"] == 2 and metrics["duplicates"] == 1
    assert metrics["files"] == ["a.csv", "b.csv"]
    assert metrics["generated_headlines"] == 5 and metrics["training_headlines"] > 0
    params = Store(storage).manifest("evaluations", outcome.evaluation_id)["params"]
    assert [f["sha256"] for f in params["files"]] == [sha256_file(a), sha256_file(b)]


def test_unreadable_or_empty_csv_is_a_one_line_error(storage, model, tmp_path, csv_file):
    before = Store(storage).versions("evaluations")
    with pytest.raises(IngestError, match="missing.csv: no such file"):
        evaluate_csvs.fn(storage, model, [str(tmp_path / "missing.csv")], samples=0)
    bad = csv_file(tmp_path, "cols.csv", b"1,2\n", header=b"a,b\n")
    with pytest.raises(IngestError, match="cols.csv: missing column"):
        evaluate_csvs.fn(storage, model, [str(bad)], samples=0)
    useless = csv_file(tmp_path, "useless.csv", b"nodate,headline\n")
    with pytest.raises(ValueError, match=r"useless.csv: no usable headlines .*1 quarantined"):
        evaluate_csvs.fn(storage, model, [str(useless)], samples=0)
    with pytest.raises(ValueError, match="no CSV"):
        evaluate_csvs.fn(storage, model, [], samples=0)
    assert Store(storage).versions("evaluations") == before


def test_recent_view_says_how_many_rows_are_in_each_hash_split(storage, model):
    store = Store(storage)
    dataset = store.resolve("datasets", "latest")
    outcome = evaluate_model.fn(storage, model, dataset, "recent:3", samples=0)
    view = read_view(store.path("datasets", dataset), "recent:3")
    recent = outcome.metrics["recent"]
    assert recent["days"] == 3 and (recent["first_date"], recent["last_date"]) == (
        "2003-02-25", "2003-02-27")
    assert outcome.metrics["headlines"] == view.height == sum(recent["splits"].values())
    assert recent["splits"] == {s: int((view["split"] == s).sum())
                                for s in ("train", "validation", "test")}
    assert outcome.metrics["bits_per_char"] == pytest.approx(
        expected_bpc(storage, model, view["headline"].to_list()))
    assert store.manifest("evaluations", outcome.evaluation_id)["params"]["split"] == "recent:3"
    with pytest.raises(ValueError, match="recent:0"):
        evaluate_model.fn(storage, model, dataset, "recent:0", samples=0)
