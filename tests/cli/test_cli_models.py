"""`charlm train`, `evaluate`, `generate`, `versions`, `promote` and `compare`, in-process.

Most share one store with a tiny trained model (the module's `trained` fixture), in file
order: the first tests expect the store's one model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import (
    TINY,
    assert_runtime_error,
    assert_usage_error,
    last_line,
    metrics_evaluation_id,
    run,
    write_csv,
)

from charlm.config import TrainConfig
from charlm.model import read_config
from cli.main import main
from storage import Store
from storage.datasets import read_texts
from storage.layout import ModelFiles


def test_train_prints_model_id_and_first_model_becomes_champion(trained, capsys):
    store = Store(trained["store"])
    model_id = last_line(trained["printed"])  # what `charlm train` printed
    assert [m["id"] for m in store.versions("models")] == [model_id]
    assert store.resolve("models", "champion") == model_id
    code, out, _ = run(capsys, Path(trained["store"]), "versions", "models")
    assert code == 0
    [line] = [line for line in out.splitlines() if line.split()[1] == model_id]
    assert "champion" in line and "latest" in line
    [change] = store.alias_history("models", "champion")
    assert change["id"] == model_id and change["reason"].startswith("first model")
    assert f"alias champion -> {model_id}" in out  # the history, shown by `versions`


def test_train_bad_arguments(capsys, tmp_path, trained):
    code, _, err = run(capsys, tmp_path, "train", "--hidden", "0")
    assert_usage_error(code, err, "hidden", "0")
    code, _, err = run(capsys, tmp_path, "train", "--cell", "transformer")
    assert_usage_error(code, err, "transformer")
    code, _, err = run(capsys, tmp_path, "train", "--max-minutes", "-1")
    assert_usage_error(code, err, "max_minutes")
    for bad in ("0", "two"):
        code, _, err = run(capsys, tmp_path, "train", "--devices", bad)
        assert_usage_error(code, err, "devices", bad)
    code, _, err = run(capsys, Path(trained["store"]), "train", "--dataset", "nosuchdataset",
                       *TINY)
    assert_runtime_error(code, err, "nosuchdataset")


def test_evaluate_prints_metrics_json(trained, capsys):
    store = Path(trained["store"])
    code, out, _ = run(capsys, store, "evaluate", "champion", "--split", "test",
                       "--samples", "50")
    assert code == 0
    metrics = json.loads(out)
    assert 0 < metrics["bits_per_char"] < 8
    assert metrics["perplexity"] == pytest.approx(2 ** metrics["bits_per_char"])
    assert metrics["split"] == "test"
    test_rows = read_texts(next((store / "datasets").glob("2*")), "test")
    assert metrics["headlines"] == len(test_rows)
    assert metrics["generated_headlines"] == 50
    for key in ("novelty", "word_validity", "distinct_1", "distinct_2", "duplicate_rate"):
        assert 0 <= metrics[key] <= 1 or metrics[key] is None, key
    evaluation = store / "evaluations" / metrics_evaluation_id(store)
    assert (evaluation / "report.md").read_text().count("|") > 10
    assert (evaluation / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_bad_arguments(trained, capsys):
    store = Path(trained["store"])
    code, _, err = run(capsys, store, "evaluate", "latest", "--split", "holdout")
    assert_usage_error(code, err, "holdout")
    code, _, err = run(capsys, store, "evaluate", "nosuchmodel")
    assert_runtime_error(code, err, "nosuchmodel")


def test_generate_writes_n_headlines_and_is_reproducible(trained, capsys):
    store = Path(trained["store"])
    code, out, _ = run(capsys, store, "generate", "latest", "-n", "7", "--seed", "3",
                       "--max-length", "30")
    assert code == 0
    first = Path(last_line(out)).read_text().splitlines()
    assert len(first) == 7
    code, out, _ = run(capsys, store, "generate", "latest", "-n", "7", "--seed", "3",
                       "--max-length", "30")
    assert Path(last_line(out)).read_text().splitlines() == first
    code, out, _ = run(capsys, store, "generate", "latest", "-n", "2", "--prefix", "police ",
                       "--max-length", "10")
    assert all(line.startswith("police ") for line in Path(last_line(out)).read_text()
               .splitlines())


def test_generate_bad_arguments(trained, capsys):
    store = Path(trained["store"])
    code, _, err = run(capsys, store, "generate", "latest", "-n", "0")
    assert_usage_error(code, err, "-n", "0")
    code, _, err = run(capsys, store, "generate", "latest", "--top-p", "1.5")
    assert_usage_error(code, err, "top_p", "1.5")
    code, _, err = run(capsys, store, "generate", "latest", "--prefix", "caf\u00e9")
    assert_runtime_error(code, err, "\u00e9")


def test_versions_lists_every_kind(trained, capsys):
    code, out, _ = run(capsys, Path(trained["store"]), "versions")
    assert code == 0
    kinds = {line.split()[0] for line in out.strip().splitlines()}
    assert {"datasets", "models"} <= kinds
    code, _, err = run(capsys, Path(trained["store"]), "versions", "widgets")
    assert_usage_error(code, err, "widgets")


RECIPE = ("weight_decay", "ema", "recent_repeats", "recent_days")


def test_train_reaches_the_champion_through_the_test_split_decision(capsys, tmp_path):
    store_dir = tmp_path / "s"
    csv = write_csv(tmp_path / "a.csv", 400, seed=6)
    assert main(["--storage", str(store_dir), "ingest", str(csv)]) == 0
    code, out, err = run(capsys, store_dir, "train", *TINY)
    assert code == 0 and "promoted to champion" in err
    first = last_line(out)
    code, out, err = run(capsys, store_dir, "train", *TINY, "--seed", "1",
                         "--weight-decay", "0.05", "--ema", "0.5", "--recent-repeats", "2",
                         "--recent-days", "3")
    assert code == 0
    second = last_line(out)
    assert f"vs champion {first}" in err
    store = Store(store_dir)
    # The recipe options reach the stored training config; the defaults are the config's.
    recipes = {}
    for model_id in (first, second):
        _, saved = read_config(ModelFiles.at(store.path("models", model_id)))
        recipes[model_id] = tuple(saved["train"][k] for k in RECIPE)
    assert recipes == {first: tuple(getattr(TrainConfig(), k) for k in RECIPE),
                       second: (0.05, 0.5, 2, 3)}
    # Both were just scored on the same test split; the better one holds the title.
    scores = {m["summary"]["model"]: m["summary"]["bits_per_char"]
              for m in store.versions("evaluations")[-2:]}
    assert set(scores) == {first, second}
    better = second if scores[second] < scores[first] else first
    assert store.resolve("models", "champion") == better
    assert ("promoted to champion" in err) == (better == second)

    # By hand, with the reason recorded and shown.
    other = first if better == second else second
    code, out, _ = run(capsys, store_dir, "promote", other[:15], "--reason", "nicer samples")
    assert code == 0 and last_line(out) == other
    assert store.resolve("models", "champion") == other
    assert store.alias_history("models", "champion")[-1]["reason"] == "by hand: nicer samples"
    code, out, _ = run(capsys, store_dir, "versions", "models")
    assert f"alias champion -> {other}" in out and "by hand: nicer samples" in out


def test_promote_bad_arguments(capsys, tmp_path, trained):
    code, _, err = run(capsys, tmp_path, "promote", "latest")
    assert_usage_error(code, err, "--reason")
    code, _, err = run(capsys, tmp_path, "promote", "latest", "--reason", "  ")
    assert_usage_error(code, err, "--reason")
    code, _, err = run(capsys, Path(trained["store"]), "promote", "nosuchmodel", "--reason",
                       "x")
    assert_runtime_error(code, err, "nosuchmodel")


@pytest.mark.slow
def test_compare_trains_each_cell_and_publishes_a_table(trained, capsys):
    store = Path(trained["store"])
    code, out, _ = run(capsys, store, "compare", "--cells", "rnn,gru", "--hidden", "8",
                       "--depth", "1", "--embedding", "4", "--batch-size", "32",
                       "--max-minutes", "0.05", "--samples", "5")
    assert code == 0
    table = Path(last_line(out))
    text = table.read_text()
    assert "| rnn" in text and "| gru" in text
    png = table.with_name("comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(table.with_name("comparison.json").read_text())
    assert [r["cell"] for r in rows] == ["rnn", "gru"]
    assert all(0 < r["test_bpc"] < 8 for r in rows)


def test_compare_bad_arguments(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path, "compare", "--cells", "rnn,transformer")
    assert_usage_error(code, err, "transformer")


def test_evaluate_csv_scores_a_file_the_store_never_ingested(trained, capsys, tmp_path):
    store = Path(trained["store"])
    datasets = sorted(p.name for p in (store / "datasets").glob("2*"))
    csv = tmp_path / "later.csv"
    write_csv(csv, 40, seed=9)
    with csv.open("a") as handle:
        handle.write("2003-99-99,a bad date\n")
    code, out, err = run(capsys, store, "evaluate", "champion", "--csv", str(csv),
                         "--samples", "0")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["files"] == ["later.csv"] and metrics["quarantined_rows"] == 1
    assert metrics["quarantined_by_reason"] == {"bad date": 1}
    assert metrics["headlines"] + metrics["duplicates"] == 40 and 0 < metrics["bits_per_char"]
    assert sorted(p.name for p in (store / "datasets").glob("2*")) == datasets
    evaluation = Store(store).manifest("evaluations", metrics_evaluation_id(store))
    [source] = evaluation["params"]["files"]
    assert source["path"] == str(csv.resolve()) and len(source["sha256"]) == 64

    code, _, err = run(capsys, store, "evaluate", "champion", "--csv", str(csv), "--split",
                       "train")
    assert_usage_error(code, err, "--csv", "--split")
    code, _, err = run(capsys, store, "evaluate", "champion", "--csv")
    assert_usage_error(code, err, "--csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("date,text\n20031001,x\n")
    code, _, err = run(capsys, store, "evaluate", "champion", "--csv", str(bad))
    assert_runtime_error(code, err, "bad.csv", "missing column")


def test_evaluate_recent_view(trained, capsys):
    store = Path(trained["store"])
    code, out, err = run(capsys, store, "evaluate", "champion", "--split", "recent:2",
                         "--samples", "0")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["split"] == "recent:2" and metrics["recent"]["days"] == 2
    assert sum(metrics["recent"]["splits"].values()) == metrics["headlines"] == 120  # 60/day
    code, out, _ = run(capsys, store, "evaluate", "champion", "--split", "recent",
                       "--samples", "0")
    assert code == 0 and json.loads(out)["recent"]["days"] == 30
    for bad in ("recent:0", "recent:x", "recent:-1"):
        code, _, err = run(capsys, store, "evaluate", "champion", "--split", bad)
        assert_usage_error(code, err, repr(bad), "DAYS")
