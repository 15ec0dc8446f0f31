"""benchmarks/bench_recipe.py: both sweeps run end to end on a tiny stored dataset."""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
import pytest

from benchmarks.bench_recipe import main, parse_shape


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    from charlm.demo_corpus import make_corpus
    from tasks.ingest import ingest_csvs

    root = tmp_path_factory.mktemp("recipe")
    csv = root / "headlines.csv"
    rows = make_corpus(400, np.random.default_rng(0))
    pl.DataFrame(rows, schema=["publish_date", "headline_text"], orient="row").write_csv(csv)
    ingest_csvs.fn(str(root / "store"), [str(csv)])
    return str(root / "store")


def test_parse_shape_names_the_bad_value() -> None:
    assert parse_shape("gru:384:2:128") == ("gru", 384, 2, 128)
    with pytest.raises(argparse.ArgumentTypeError, match="'gru:384'"):
        parse_shape("gru:384")


def test_run_prints_validation_and_test(storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--storage", storage, "run", "gru:16:1:32", "--epochs", "2"])
    out = capsys.readouterr().out
    assert "epoch 2:" in out
    assert "2 epochs: validation" in out and "test" in out


def test_speed_prints_chars_per_second(storage: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    main(["--storage", storage, "speed", "gru:16:1:16", "lstm:16:1:16", "--seconds", "0.5"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["gru 16x1 batch 16", "lstm 16x1 batch 16"]
    assert all("chars/s" in line for line in lines)
