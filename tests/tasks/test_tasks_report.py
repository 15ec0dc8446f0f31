"""tasks.report: report markdown, and artifacts being a no-op outside a Prefect run."""

from __future__ import annotations

from charlm.config import TrainConfig
from charlm.train import TrainResult
from tasks.callbacks import TrainingProgress
from tasks.report import (
    ModelRow,
    model_row,
    publish_markdown,
    publish_table,
    skipped_report_markdown,
    train_report_markdown,
)

CHALLENGER = ModelRow("m-new", "ds-2", 2.5, 2.4, 5.28, 3, 1234)
CHAMPION = ModelRow("m-old", "ds-1", 2.7, 2.6, 6.06, 5, 1234)


def test_report_compares_both_models_and_states_the_decision():
    text = train_report_markdown("ds-2", CHALLENGER, CHAMPION, True, ["a | b", "*x*"])
    assert "| | challenger | champion |" in text
    assert "| test bits/char | 2.4000 | 2.6000 |" in text
    assert "| model | `m-new` | `m-old` |" in text
    assert "promoted to champion" in text
    # samples sit in a code block so markdown characters in headlines stay literal
    assert "```\na | b\n*x*\n```" in text


def test_report_first_model_and_kept_champion():
    assert "first model" in train_report_markdown("ds", CHALLENGER, None, True, [])
    kept = train_report_markdown("ds", CHALLENGER, CHAMPION, False, [])
    assert "champion stays" in kept and "```" not in kept


def test_skipped_report_says_why():
    text = skipped_report_markdown("ds-1", "m-old")
    assert "No new headlines" in text and "`m-old`" in text and "force" in text


def test_missing_values_render_as_dashes():
    row = ModelRow("m", "?", None, None, None, None, None)
    assert "| test bits/char | - |" in train_report_markdown("ds", row, None, True, [])


def test_model_row_reads_the_manifest(storage, publish):
    dataset = publish("datasets")
    model = publish("models", summary={"validation_bpc": 2.5, "epochs": 3, "parameters": 99},
                    parents={"datasets": [dataset]})
    row = model_row(storage, model, {"bits_per_char": 2.4, "perplexity": 5.3})
    assert row == ModelRow(model, dataset, 2.5, 2.4, 5.3, 3, 99)


def test_artifacts_are_skipped_outside_a_run():
    assert publish_markdown.fn("# hi") is None
    assert publish_table.fn([{"a": 1}]) is None


def test_progress_callback_is_inert_outside_a_run():
    progress = TrainingProgress(TrainConfig(epochs=2, max_minutes=10.0), every_seconds=0.0)
    assert not progress.enabled
    progress.on_train_begin({"headlines": 10, "resumed_from": None})
    progress.on_batch_end(1, {"epoch": 1, "batch": 1, "batches": 2, "bits_per_char": 3.0})
    assert 24.0 < progress.progress < 26.0  # half of epoch 1 of 2
    progress.on_epoch_end(1, {"validation_bpc": 2.0})
    assert 49.0 < progress.progress < 51.0
    progress.on_train_end(TrainResult(best_validation_bpc=2.0, best_epoch=1, stopped="epochs"))
    assert progress.progress == 100.0
    assert progress.artifact_id is None
