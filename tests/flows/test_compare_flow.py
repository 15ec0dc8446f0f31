"""The compare-architectures flow: one model per cell, one comparison version + artifact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from flows.compare import REPORT_KEY, compare_architectures
from storage import Store


@pytest.mark.slow
def test_compare_publishes_table_plot_and_artifact(trained, tiny, read_artifact):
    network, training = tiny
    outcome = compare_architectures(cells=["rnn", "lstm"], network=network,
                                    training=replace(training, max_minutes=0.05),
                                    samples=5, storage=trained.storage)
    rows = json.loads(Path(outcome.table).with_name("comparison.json").read_text())
    assert [r["cell"] for r in rows] == ["rnn", "lstm"]
    manifest = Store(trained.storage).manifest("evaluations", outcome.evaluation_id)
    assert sorted(manifest["parents"]["models"]) == sorted(r["model"] for r in rows)
    assert manifest["parents"]["datasets"] == [trained.dataset_id]
    assert Path(outcome.plot).read_bytes()[:4] == b"\x89PNG"
    artifact = read_artifact(REPORT_KEY)
    assert artifact is not None and "| rnn" in artifact.data


def test_compare_rejects_an_unknown_cell(trained, tiny):
    with pytest.raises(ValueError, match="transformer"):
        compare_architectures(cells=["rnn", "transformer"], network=tiny[0],
                              training=tiny[1], storage=trained.storage)
