"""profile_step: a tiny model's training step is profiled and its ops summed by type (a smoke
test: the figures themselves say nothing here)."""

from __future__ import annotations

import tempfile

import pytest

from benchmarks import profile_step
from benchmarks.common import DEFAULT_CSV
from charlm import kernels


@pytest.mark.skipif(not DEFAULT_CSV.exists(), reason="shared CSV absent")
def test_ops_of_the_training_loop_are_summed_by_type(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the profiler's files
    assert profile_step.main(["--rows", "400", "--hidden", "16", "--batch", "32", "--ops"]) == 0
    out = capsys.readouterr().out
    assert "| op type | ms a step | share | calls a step |" in out
    assert "| _MklMatMul |" in out or "| MatMul |" in out
    if kernels.ops() is not None:
        assert "| CharlmLstmSequenceGrad |" in out and "CharlmSparseXent" in out
