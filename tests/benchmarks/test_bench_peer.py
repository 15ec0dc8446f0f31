"""bench_peer: the PyTorch peer and charlm's path run side by side on a few CSV rows and
print the table and verdicts (a smoke test: its ratios say nothing about the targets)."""

from __future__ import annotations

import pytest

from benchmarks import bench_peer
from benchmarks.common import DEFAULT_CSV

pytest.importorskip("torch")  # the optional `bench` extra; CI does not install it


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_CSV.exists(), reason="shared CSV absent")
def test_peer_and_charlm_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_peer.main(["--shapes", "gru384", "--precisions", "float32", "--epochs", "2",
                            "--rows", "300"]) == 0
    out = capsys.readouterr().out
    assert "| gru 384x2 batch 128 | float32 |" in out
    assert "charlm/peer steady" in out and "whole run/steady" in out


def test_flops_per_char_counts_embedding_input() -> None:
    shape = bench_peer.SHAPES["lstm128"]
    forward = 2 * (64 + 128) * 4 * 128 + 2 * (128 + 128) * 4 * 128 + 2 * 128 * 118
    assert bench_peer.flops_per_char(shape) == 3 * forward
