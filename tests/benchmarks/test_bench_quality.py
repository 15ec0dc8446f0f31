"""benchmarks/bench_quality.py: options that only shape a training run need --train-minutes."""

from __future__ import annotations

import pytest

from benchmarks.bench_quality import main


@pytest.mark.parametrize("option", [["--hidden", "512"], ["--epochs", "7"]])
def test_recipe_options_without_a_training_run_are_refused(tmp_path, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--storage", str(tmp_path / "store"), *option])
    assert exit_.value.code == 2
    assert "give --train-minutes too" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # refused before anything is opened
