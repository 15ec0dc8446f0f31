"""Learning-curve plots are real PNGs; the markdown report and comparison table show the data."""

from __future__ import annotations

import pytest

from charlm.quality import sample_quality
from charlm.report import (
    comparison_table,
    drift_markdown,
    drift_trend_table,
    escape,
    markdown_report,
    plot_comparison,
    plot_drift_trend,
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


def test_markdown_report_describes_csv_files_and_the_recent_view():
    csv = {**METRICS, "dataset": None, "split": None, "files": ["oct.csv", "nov.csv"],
           "scored_on": "oct.csv, nov.csv", "rows_read": 12, "duplicates": 1,
           "quarantined_rows": 3, "quarantined_by_reason": {"bad date": 2, "ragged row": 1},
           "headlines_in_training": 4}
    text = markdown_report("m-001", csv, {}, [], None)
    assert "## Likelihood on oct.csv, nov.csv" in text and "None" not in text
    assert "`oct.csv`, `nov.csv` (12 rows read, not ingested)" in text
    assert "**Quarantined:** 3 (bad date: 2, ragged row: 1); duplicates dropped: 1" in text
    assert "training split:** 4 headlines" in text
    recent = {**METRICS, "split": "recent:7", "recent": {
        "days": 7, "first_date": "2003-10-25", "last_date": "2003-10-31",
        "splits": {"train": 90, "validation": 5, "test": 6}}}
    text = markdown_report("m-001", recent, {}, [], None)
    assert "## Likelihood on the recent:7 split" in text
    assert "newest 7 days of publish dates (2003-10-25 to 2003-10-31)" in text
    assert "train 90, validation 5, test 6" in text


DRIFT = {"dataset": "d-2", "previous_dataset": "d-1", "model": "m-1",
         "training_dataset": "d-1", "new_rows": 6599, "first_date": "2003-10-01",
         "last_date": "2003-10-31", "bits_per_char": 2.1234, "perplexity": 4.357,
         "champion_test_bpc": 1.9876, "words": 1000, "unseen_word_share": 0.031,
         "distinct_unseen_words": 25, "top_unseen_words": [["umaga", 10], ["a_b|c", 2]],
         "by_length": METRICS["by_length"]}


def test_drift_report_shows_the_batch_the_reference_and_new_words():
    text = drift_markdown(DRIFT)
    assert text.startswith("# Drift: 6,599 new headlines in dataset `d-2`")
    assert "`m-1`, trained on dataset `d-1`" in text and "not in `d-1`" in text
    assert "| bits per character on the new headlines | 2.1234 |" in text
    assert "| 1.9876 |" in text and "3.1 % of 1,000 (25 distinct)" in text
    assert "| umaga | 10 |" in text and "| a\\_b\\|c | 2 |" in text  # escaped for markdown
    first = drift_markdown({**DRIFT, "previous_dataset": None, "top_unseen_words": [],
                            "champion_test_bpc": None})
    assert "the first dataset" in first and "most frequent" not in first


POINTS = [
    {"series": "retrain", "date": "2003-09-30", "dataset": "d-1", "model": "m-1",
     "headlines": 2355, "bits_per_char": 1.98, "unseen_word_share": None,
     "decision": "promoted"},
    {"series": "new batch", "date": "2003-10-31", "dataset": "d-2", "model": "m-1",
     "headlines": 6599, "bits_per_char": 2.05, "unseen_word_share": 0.031, "decision": None},
    {"series": "retrain", "date": "2003-10-31", "dataset": "d-2", "model": "m-2",
     "headlines": 2710, "bits_per_char": 1.97, "unseen_word_share": None,
     "decision": "promoted"},
]


def test_drift_trend_table_and_plot(tmp_path):
    table = drift_trend_table(POINTS)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(POINTS)
    assert "| 2003-10-31 | new batch | `d-2` | `m-1` | 6,599 | 2.0500 | 3.1 % | – |" in table
    path = tmp_path / "trend.png"
    plot_drift_trend(POINTS, path)
    assert_png(path)
    plot_drift_trend(POINTS[1:2], tmp_path / "one.png")  # a single date still draws
    assert_png(tmp_path / "one.png")
    with pytest.raises(ValueError):
        plot_drift_trend([], tmp_path / "none.png")
