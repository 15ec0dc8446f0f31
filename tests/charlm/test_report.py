"""Learning-curve plots are real PNGs; the markdown report and comparison table show the data."""

from __future__ import annotations

import pytest

from charlm.quality import sample_quality
from charlm.report import (
    comparison_table,
    escape,
    markdown_report,
    plot_comparison,
    plot_learning_curve,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history(offset: float = 0.0, epochs: int = 3) -> list[dict]:
    return [{"epoch": e, "train_bpc": 3.0 - 0.5 * e + offset, "validation_bpc": 3.1 - 0.4 * e
             + offset, "seconds": 60.0, "elapsed": 60.0 * e, "learning_rate": 1e-3,
             "complete": e < epochs} for e in range(1, epochs + 1)]


METRICS = {
    "bits_per_char": 2.3456, "perplexity": 5.0823, "characters": 1234, "headlines": 40,
    "model": "m-001", "dataset": "d-042", "split": "test",
    "by_length": [
        {"length": "0-19", "headlines": 10, "bits_per_char": 2.9876, "perplexity": 7.93,
         "characters": 150},
        {"length": "80+", "headlines": 30, "bits_per_char": 2.1111, "perplexity": 4.32,
         "characters": 1084},
    ],
}


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000  # axes, lines and text, not an empty canvas


def test_learning_curve_is_a_png(tmp_path):
    path = tmp_path / "curve.png"
    plot_learning_curve(history(), path)
    assert_png(path)
    with pytest.raises(ValueError):
        plot_learning_curve([], tmp_path / "empty.png")


def test_comparison_plot_is_a_png(tmp_path):
    path = tmp_path / "compare.png"
    plot_comparison({"rnn": history(0.5), "gru": history(0.1), "lstm": history(0.0, 4),
                     "skipped": []}, str(path))
    assert_png(path)
    with pytest.raises(ValueError):
        plot_comparison({"rnn": []}, tmp_path / "none.png")


def test_markdown_report_shows_metrics_quality_and_examples():
    generated = [f"headline number {i}" for i in range(25)] + ["police probe crash"]
    quality = sample_quality(generated, ["police probe crash", "headline in the news"],
                             truncated=[False] * 25 + [True])
    text = markdown_report("m-001", METRICS, quality, history(), "learning_curve.png")
    assert text.startswith("# Model `m-001`")
    assert "`d-042`" in text
    for value in ("2.3456", "5.0823", "0-19", "2.9876", "80+", "2.1111"):
        assert value in text
    assert f"{100 * 25 / 26:.1f} %" in text  # novelty
    assert f"{100 / 26:.1f} %" in text  # runaways
    assert "- headline number 0\n" in text and "- headline number 19\n" in text
    assert "headline number 20" not in text  # 20 examples only
    assert "![Learning curve](learning_curve.png)" in text
    assert "| 3 | 3 | 1.9000 |" in text  # epochs, best epoch, best validation bpc


def test_markdown_report_without_plot_or_history():
    quality = sample_quality(["a b"], ["a c"])
    text = markdown_report("m-002", {"bits_per_char": 1.5, "perplexity": 2.83}, quality, [],
                           None)
    assert "![" not in text and "## Training" not in text
    assert "1.5000" in text and "- a b" in text
    assert "| headlines | – |" in text  # metrics missing from the dict show a dash


def test_escape_keeps_headlines_literal():
    assert escape("a *b* | c_d") == r"a \*b\* \| c\_d"
    assert escape("# 1 story") == r"\# 1 story"
    assert escape("10. things") == r"10\. things"
    assert escape("plain words") == "plain words"


def test_comparison_table_bolds_the_best():
    rows = [
        {"cell": "gru", "hidden": 512, "depth": 2, "parameters": 2_500_000, "minutes": 30.04,
         "validation_bpc": 2.1, "test_bpc": 2.12, "examples": ["a | b", "c"]},
        {"cell": "lstm", "hidden": 512, "depth": 2, "parameters": 3_300_000, "minutes": 30,
         "validation_bpc": 2.05, "test_bpc": 2.07, "examples": "x"},
        {"cell": "rnn", "hidden": 512, "depth": 2},
    ]
    lines = comparison_table(rows).splitlines()
    assert lines[0] == ("| cell | hidden | depth | parameters | minutes | validation bpc | "
                        "test bpc | example headlines |")
    assert len(lines) == 5
    assert lines[2] == ("| gru | 512 | 2 | 2,500,000 | 30.0 | 2.1000 | 2.1200 | "
                        r"a \| b / c |")
    assert "| **2.0500** | **2.0700** | x |" in lines[3]
    assert lines[4].count("–") == 5
