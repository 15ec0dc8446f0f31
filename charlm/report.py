"""Human-readable views of a model: learning-curve plots and a markdown report.

Inputs are the plain dicts charlm already produces: `TrainResult.history` entries
(epoch, train_bpc, validation_bpc, seconds, elapsed[, complete]), the metrics dict of
`charlm.evaluate.evaluate` and the dict of `charlm.quality.sample_quality`. Plots are drawn on
a `matplotlib.figure.Figure` with the Agg canvas, so importing this module (or plotting from a
worker thread) never touches matplotlib's global backend or pyplot state. Callers choose every
path; nothing here decides where files go.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

PathLike = str | os.PathLike

# CommonMark characters that change meaning anywhere in a line of text or a table cell.
_INLINE = re.compile(r"([\\`*_\[\]<>|~])")
# Line starts that would turn a list item into a heading, a nested list or a quote.
_LEADING = re.compile(r"^([#+\-=>]|\d+[.)])")


def _figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)  # attaches itself to the figure; no pyplot, no global backend
    return figure


def _save(figure, path: PathLike) -> None:
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")


def plot_learning_curve(history: Sequence[Mapping[str, Any]], path: PathLike) -> None:
    """PNG of training and validation bits per char per epoch, best epoch marked."""
    if not history:
        raise ValueError("no epochs in the training history to plot")
    epochs = [h["epoch"] for h in history]
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(epochs, [h["train_bpc"] for h in history], "o-", label="training")
    axes.plot(epochs, [h["validation_bpc"] for h in history], "s-", label="validation")
    best = min(history, key=lambda h: h["validation_bpc"])
    axes.axvline(best["epoch"], color="grey", linestyle=":", linewidth=1,
                 label=f"best: epoch {best['epoch']} ({best['validation_bpc']:.3f})")
    # The last epoch of a run stopped by its time budget is partial: its training bpc
    # covers only the batches seen, so say so rather than let it look like a real point.
    partial = [h for h in history if h.get("complete") is False]
    if partial:
        axes.plot([h["epoch"] for h in partial], [h["train_bpc"] for h in partial], "x",
                  color="black", label="partial epoch")
    axes.set_xlabel("epoch")
    axes.set_ylabel("bits per character")
    axes.set_title("Learning curve")
    axes.grid(True, alpha=0.3)
    axes.legend()
    _save(figure, path)


def plot_comparison(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: PathLike) -> None:
    """PNG of validation bits per char against training time, one line per run (e.g. cell)."""
    runs = {name: history for name, history in runs.items() if history}
    if not runs:
        raise ValueError("no run with a training history to plot")
    figure = _figure()
    axes = figure.add_subplot()
    for name, history in runs.items():
        # Same wall-clock axis for every run: architectures are compared at equal cost.
        minutes = [h["elapsed"] / 60.0 for h in history]
        best = min(h["validation_bpc"] for h in history)
        axes.plot(minutes, [h["validation_bpc"] for h in history], "o-",
                  label=f"{name} (best {best:.3f})")
    axes.set_xlabel("training time (minutes)")
    axes.set_ylabel("validation bits per character")
    axes.set_title("Validation bits per character over training time")
    axes.grid(True, alpha=0.3)
    axes.legend()
    _save(figure, path)


def escape(text: str) -> str:
    """Markdown-safe text for a list item or table cell (headlines contain * _ | # ...)."""
    text = _INLINE.sub(r"\\\1", text)
    return _LEADING.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], text)


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _percent(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100.0 * value:.1f} %"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown_report(model_id: str, metrics: Mapping[str, Any], quality: Mapping[str, Any],
                    history: Sequence[Mapping[str, Any]], plot_name: str | None) -> str:
    """report.md for one model: likelihood, training, sample quality, examples, plot.

    `plot_name` is the learning-curve PNG's path relative to the report (None: no image).
    """
    split = metrics.get("split", "test")
    lines = [f"# Model `{model_id}`", ""]
    ids = [f"- **Model:** `{model_id}`"]
    if metrics.get("dataset"):
        ids.append(f"- **Dataset:** `{metrics['dataset']}` (split: {split})")
    lines += [*ids, ""]

    lines += [f"## Likelihood on the {escape(str(split))} split", ""]
    lines += _table(["metric", "value"], [
        ["bits per character", _number(metrics.get("bits_per_char"))],
        ["perplexity (per character)", _number(metrics.get("perplexity"))],
        ["headlines", _number(metrics.get("headlines"))],
        ["characters (incl. end markers)", _number(metrics.get("characters"))],
    ])
    by_length = metrics.get("by_length") or []
    if by_length:
        lines += ["", "By headline length (characters):", ""]
        lines += _table(["length", "headlines", "bits per char", "perplexity"], [
            [escape(str(b["length"])), _number(b.get("headlines")),
             _number(b.get("bits_per_char")), _number(b.get("perplexity"))] for b in by_length])
    lines.append("")

    if history:
        best = min(history, key=lambda h: h["validation_bpc"])
        lines += ["## Training", ""]
        lines += _table(["epochs", "best epoch", "best validation bpc", "last training bpc",
                         "training minutes"], [[
                             str(len(history)), str(best["epoch"]),
                             _number(best["validation_bpc"]),
                             _number(history[-1].get("train_bpc")),
                             _number(history[-1].get("elapsed", 0.0) / 60.0, 1)]])
        lines.append("")
    if plot_name:
        lines += [f"![Learning curve]({plot_name})", ""]

    if quality:
        lines += _quality_section(quality)
    return "\n".join(lines).rstrip("\n") + "\n"


def _quality_section(quality: Mapping[str, Any]) -> list[str]:
    n = quality.get("generated_headlines", len(quality.get("examples", [])))
    lines = [f"## Sample quality ({_number(n)} generated headlines)", ""]
    rows = [
        ["novelty (not a training headline)", _percent(quality.get("novelty"))],
        ["word validity (words seen in training)", _percent(quality.get("word_validity"))],
        ["distinct-1 (distinct words / words)", _number(quality.get("distinct_1"), 3)],
        ["distinct-2 (distinct word pairs / pairs)", _number(quality.get("distinct_2"), 3)],
        ["duplicates within the batch", _percent(quality.get("duplicate_rate"))],
    ]
    if quality.get("runaway_rate") is not None:
        rows.append(["runaways (hit the length limit)", _percent(quality["runaway_rate"])])
    lines += _table(["statistic", "value"], rows)
    generated, data = quality.get("length"), quality.get("data_length")
    if generated or data:
        lines += ["", "Length in characters:", ""]
        lines += _table(["", "mean", "p10", "median", "p90"], [
            [name, *(_number((stats or {}).get(k), 1) for k in ("mean", "p10", "p50", "p90"))]
            for name, stats in (("generated", generated), ("training data", data)) if stats])
    examples = quality.get("examples") or []
    if examples:
        lines += ["", f"### {len(examples)} examples", ""]
        lines += [f"- {escape(text)}" if text.strip() else "- *(empty)*" for text in examples]
    lines.append("")
    return lines


_COLUMNS = (("cell", "cell"), ("hidden", "hidden"), ("depth", "depth"),
            ("parameters", "parameters"), ("minutes", "minutes"),
            ("validation_bpc", "validation bpc"), ("test_bpc", "test bpc"),
            ("examples", "example headlines"))


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table comparing architectures; the best validation/test bpc are in bold.

    Row keys: cell, hidden, depth, parameters, minutes, validation_bpc, test_bpc, examples
    (a string or a list of example headlines, shown joined by " / "); missing ones show "–".
    """
    best = {}
    for key in ("validation_bpc", "test_bpc"):
        values = [r[key] for r in rows
                  if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
        best[key] = min(values) if values else None
    body = []
    for row in rows:
        cells = []
        for key, _ in _COLUMNS:
            value = row.get(key)
            if key == "examples" and isinstance(value, (list, tuple)):
                cell = " / ".join(escape(str(v)) for v in value) or "–"
            elif key == "minutes":
                cell = _number(float(value), 1) if value is not None else "–"
            else:
                cell = _number(value)
            if key in best and value is not None and value == best[key]:
                cell = f"**{cell}**"
            cells.append(cell)
        body.append(cells)
    return "\n".join(_table([title for _, title in _COLUMNS], body)) + "\n"
