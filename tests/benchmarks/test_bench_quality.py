"""benchmarks/bench_quality.py: options of charlm train are passed to it, with --train-minutes."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_quality import main


@pytest.mark.parametrize("option", [["--hidden", "512"], ["--epochs", "7"]])
def test_recipe_options_without_a_training_run_are_refused(tmp_path, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--storage", str(tmp_path / "store"), *option])
    assert exit_.value.code == 2
    assert "give --train-minutes too" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # refused before anything is opened


def test_an_option_charlm_train_does_not_have_is_refused_before_anything_runs(tmp_path,
                                                                               capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--storage", str(tmp_path / "store"), "--train-minutes", "1", "--dropuot", "0.3"])
    assert exit_.value.code == 2
    assert "--dropuot" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_a_training_run_is_charlm_train_with_the_options_given(tmp_path, csv_file, capsys):
    rows = b"".join(b"2003021%d,%s council plans new road %d\n" % (i % 9, w, i)
                    for i, w in enumerate([b"city", b"rural", b"shire", b"state"] * 60))
    csv = csv_file(tmp_path, "h.csv", rows)
    store = tmp_path / "store"
    main(["--storage", str(store), "--csv", str(csv), "--train-minutes", "0.2", "--seed", "3",
          "--hidden", "16", "--depth", "1", "--embedding", "8", "--dropout", "0.05",
          "--weight-drop", "0.1", "--epochs", "1", "--ema", "0.5", "--max-order", "3"])
    out = capsys.readouterr().out
    assert "charlm gru 16x1" in out and "margin:" in out
    config = json.loads(next(store.glob("models/*/config.json")).read_text())
    flat = {k: v for part in config.values() if isinstance(part, dict) for k, v in part.items()}
    assert (flat["hidden"], flat["depth"], flat["dropout"], flat["weight_drop"], flat["ema"],
            flat["seed"]) == (16, 1, 0.05, 0.1, 0.5, 3)
