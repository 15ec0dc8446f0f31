"""What the flows show in Prefect's UI: reports and tables (artifacts).

The training progress artifact is a training callback (tasks.callbacks.TrainingProgress).

Artifact keys are fixed (lowercase, dashes), so every run adds a new version of the same
artifact and the UI's Artifacts page shows its history. Artifacts are a view, never a source
of truth: failing to write one logs a warning and never fails a run (the store has the data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from charlm.kernels import KernelStatus
from charlm.report import drift_trend_table
from storage import one_line
from tasks.common import in_prefect_run, open_store, run_logger

REPORT_KEY = "train-headlines-report"
GENERATION_KEY = "generate-headlines"
MAX_TABLE_ROWS = 200  # the UI renders tables client-side; a million rows would hang it


@dataclass(frozen=True)
class ModelRow:
    """One column of the challenger-vs-champion table."""

    model_id: str
    trained_on: str
    validation_bpc: float | None
    test_bpc: float | None
    test_perplexity: float | None
    epochs: int | None
    parameters: int | None
    started_from: str | None = None  # the model whose weights it started from (warm start)
    recurrent: str | None = None  # the recurrent path that trained it (None: not recorded)


def model_row(storage: str | None, model_id: str, metrics: dict[str, Any] | None) -> ModelRow:
    """Summary of a stored model plus its test metrics (None when not evaluated)."""
    manifest = open_store(storage).manifest("models", model_id)
    summary = manifest.get("summary", {})
    metrics = metrics or {}
    recurrent = summary.get("recurrent")  # models trained before it was recorded have none
    return ModelRow(model_id, ",".join(manifest.get("parents", {}).get("datasets", [])) or "?",
                    summary.get("validation_bpc"), metrics.get("bits_per_char"),
                    metrics.get("perplexity"), summary.get("epochs"), summary.get("parameters"),
                    (manifest.get("parents", {}).get("models") or [None])[0],
                    KernelStatus.from_dict(recurrent).describe() if recurrent else None)


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def train_report_markdown(dataset_id: str, challenger: ModelRow, champion: ModelRow | None,
                          promoted: bool, examples: list[str], trend: Any = None,
                          start: str = "") -> str:
    """The training report: metrics table, how the challenger started (`start`: why warm or
    cold), the decision, example headlines, and the drift trend (a tasks.drift.TrendOutcome:
    its table and where its plot is) when given."""
    columns = [("challenger", challenger)] + ([("champion", champion)] if champion else [])
    rows = [
        ("model", lambda r: _code(r.model_id)),
        ("trained on dataset", lambda r: _code(r.trained_on)),
        ("started from", lambda r: f"{_code(r.started_from)} (warm)" if r.started_from
         else "random weights (cold)"),
        ("validation bits/char", lambda r: _cell(r.validation_bpc)),
        ("test bits/char", lambda r: _cell(r.test_bpc)),
        ("test perplexity", lambda r: _cell(r.test_perplexity, 3)),
        ("epochs", lambda r: _cell(r.epochs)),
        ("parameters", lambda r: _cell(r.parameters)),
        # which recurrent path trained it (charlm.kernels): `kernels, <precision>`, or
        # `keras, <precision>: <why>`; the reason may hold a compiler's `|`
        ("recurrent path", lambda r: _cell(r.recurrent).replace("|", "\\|")),
    ]
    lines = [f"# Training report: dataset `{dataset_id}`", "",
             "| | " + " | ".join(name for name, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(get(r) for _, r in columns) + " |"
              for label, get in rows]
    lines.append("")
    if start:
        lines += [f"**Start:** {start}.", ""]
    if champion is None:
        lines.append("**Decision:** first model, promoted to champion." if promoted else
                     "**Decision:** not promoted: another run set a champion meanwhile.")
    elif promoted:
        lines.append("**Decision:** the challenger has lower test bits/char: promoted to "
                     "champion.")
    else:
        lines.append("**Decision:** the champion stays (the challenger is not better on the "
                     "test split).")
    if examples:
        # A fenced block: headlines may hold |, *, # or _ that markdown would interpret.
        lines += ["", f"## Sample headlines from {_code(challenger.model_id)}", "", "```"]
        lines += [s.replace("```", "'''") for s in examples]
        lines.append("```")
    if trend is not None:
        lines += ["", "## The champion's drift", "",
                  "Bits per character on each new batch at arrival and on the test split "
                  f"after each retrain (evaluation {_code(trend.evaluation_id)}; plot: "
                  f"[{Path(trend.plot).name}]({Path(trend.plot).as_uri()}), "
                  f"{_code(trend.plot)}).", "", drift_trend_table(trend.points).rstrip("\n")]
    return "\n".join(lines) + "\n"


def skipped_report_markdown(dataset_id: str, champion_id: str) -> str:
    return (f"# Training report: dataset `{dataset_id}`\n\nNo new headlines: champion "
            f"`{champion_id}` was already trained on dataset `{dataset_id}`; nothing was "
            "trained (run with force=true to retrain anyway).\n")


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_markdown(markdown: str, key: str = REPORT_KEY, description: str = "") -> str | None:
    """Create a markdown artifact version under `key`; its id (None outside Prefect/on error)."""
    if not in_prefect_run():
        return None
    try:
        return str(create_markdown_artifact(markdown=markdown, key=key,
                                            description=description or None))
    except Exception as error:
        run_logger().warning("%s", one_line(f"artifact {key} not created", error))
        return None


@task(name="publish-table", cache_policy=NO_CACHE)
def publish_table(rows: list[dict[str, Any]], key: str = GENERATION_KEY,
                  description: str = "") -> str | None:
    """Create a table artifact from the first MAX_TABLE_ROWS rows; its id (None on error)."""
    if not in_prefect_run():
        return None
    shown = rows[:MAX_TABLE_ROWS]
    if len(rows) > len(shown):
        description = (description + f" (first {len(shown)} of {len(rows)} rows)").strip()
    try:
        return str(create_table_artifact(table=shown, key=key, description=description or None))
    except Exception as error:
        run_logger().warning("%s", one_line(f"artifact {key} not created", error))
        return None
