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
    lines += [*ids, *_input_lines(metrics), ""]

    scored_on = (escape(metrics["scored_on"]) if metrics.get("scored_on")
                 else f"the {escape(str(split))} split")
    lines += [f"## Likelihood on {scored_on}", ""]
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


def _input_lines(metrics: Mapping[str, Any]) -> list[str]:
    """List items describing what was scored beyond a plain split: CSV files read and what
    their cleaning quarantined, or the recent view's dates and its rows per hash split."""
    lines = []
    if metrics.get("files"):
        lines.append("- **Files:** " + ", ".join(f"`{escape(f)}`" for f in metrics["files"])
                     + f" ({_number(metrics.get('rows_read'))} rows read, not ingested)")
        by_reason = metrics.get("quarantined_by_reason") or {}
        detail = ", ".join(f"{escape(k)}: {_number(v)}" for k, v in by_reason.items())
        lines.append(f"- **Quarantined:** {_number(metrics.get('quarantined_rows', 0))}"
                     + (f" ({detail})" if detail else "")
                     + f"; duplicates dropped: {_number(metrics.get('duplicates', 0))}")
        if metrics.get("headlines_in_training") is not None:
            lines.append("- **Also in the model's training split:** "
                         f"{_number(metrics['headlines_in_training'])} headlines")
    recent = metrics.get("recent")
    if recent:
        counts = ", ".join(f"{k} {_number(v)}" for k, v in recent["splits"].items())
        lines.append(f"- **Recent view:** the newest {_number(recent['days'])} days of publish "
                     f"dates ({recent['first_date']} to {recent['last_date']}); rows per hash "
                     f"split: {counts}")
    return lines


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


def drift_markdown(metrics: Mapping[str, Any]) -> str:
    """report.md of one drift measurement: the champion scored on a dataset version's new
    headlines (keys: dataset, previous_dataset, model, training_dataset, new_rows,
    first_date, last_date, bits_per_char, perplexity, by_length, champion_test_bpc, and
    from charlm.quality.unseen_words: words, unseen_word_share, distinct_unseen_words,
    top_unseen_words)."""
    lines = [f"# Drift: {_number(metrics.get('new_rows'))} new headlines in dataset "
             f"`{metrics.get('dataset')}`", "",
             f"- **Champion:** `{metrics.get('model')}`, trained on dataset "
             f"`{metrics.get('training_dataset') or '?'}`, scored before any retraining",
             f"- **New rows:** those of `{metrics.get('dataset')}` not in "
             + (f"`{metrics['previous_dataset']}`" if metrics.get("previous_dataset")
                else "any earlier version (the first dataset)")
             + f", published {metrics.get('first_date')} to {metrics.get('last_date')}", ""]
    share = metrics.get("unseen_word_share")
    lines += _table(["metric", "value"], [
        ["bits per character on the new headlines", _number(metrics.get("bits_per_char"))],
        ["the champion's test bits per character (its own test split)",
         _number(metrics.get("champion_test_bpc"))],
        ["perplexity (per character)", _number(metrics.get("perplexity"))],
        ["words never seen in the champion's training split",
         f"{_percent(share)} of {_number(metrics.get('words'))} "
         f"({_number(metrics.get('distinct_unseen_words'))} distinct)"],
    ])
    by_length = metrics.get("by_length") or []
    if by_length:
        lines += ["", "By headline length (characters):", ""]
        lines += _table(["length", "headlines", "bits per char"], [
            [escape(str(b["length"])), _number(b.get("headlines")),
             _number(b.get("bits_per_char"))] for b in by_length])
    top = metrics.get("top_unseen_words") or []
    if top:
        lines += ["", f"## The {len(top)} most frequent new words", ""]
        lines += _table(["word", "count"], [[escape(w), _number(c)] for w, c in top])
    return "\n".join(lines) + "\n"


# How the two series of the drift trend are told apart: (label, marker).
DRIFT_SERIES = {"new batch": ("champion on each new batch, at arrival", "o"),
                "retrain": ("champion on the test split, after each retrain", "s")}


def drift_trend_table(points: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of the drift trend, one row per point (keys: date, series, dataset,
    model, headlines, bits_per_char, unseen_word_share, decision)."""
    rows = [[str(p["date"]), escape(str(p["series"])), f"`{p['dataset']}`", f"`{p['model']}`",
             _number(p.get("headlines")), _number(p.get("bits_per_char")),
             _percent(p.get("unseen_word_share")), escape(str(p.get("decision") or "–"))]
            for p in points]
    return "\n".join(_table(["newest headline", "event", "dataset", "champion", "headlines",
                             "bits/char", "unseen words", "decision"], rows)) + "\n"


def plot_drift_trend(points: Sequence[Mapping[str, Any]], path: PathLike) -> None:
    """PNG of the champion's bits per char over time (the newest publish date of each
    dataset version): on each new batch at arrival, and on the test split after each
    retrain."""
    import datetime

    if not points:
        raise ValueError("no drift points to plot")
    figure = _figure()
    axes = figure.add_subplot()
    for series, (label, marker) in DRIFT_SERIES.items():
        mine = [p for p in points if p["series"] == series]
        if not mine:
            continue
        dates = [datetime.date.fromisoformat(str(p["date"])) for p in mine]
        values = [p["bits_per_char"] for p in mine]
        axes.plot(dates, values, marker=marker, linestyle="-", label=label)
        for day, value in zip(dates, values, strict=True):
            axes.annotate(f"{value:.4f}", (day, value), textcoords="offset points",
                          xytext=(6, 4), fontsize=8)
    ticks = sorted({datetime.date.fromisoformat(str(p["date"])) for p in points})
    axes.set_xticks(ticks, [t.isoformat() for t in ticks], rotation=20, fontsize=8)
    if len(ticks) == 1:  # one date: give the point some room
        day = ticks[0]
        axes.set_xlim(day - datetime.timedelta(days=15), day + datetime.timedelta(days=15))
    axes.margins(x=0.08, y=0.2)  # room for the value labels
    axes.set_xlabel("newest headline of the dataset version (publish date)")
    axes.set_ylabel("bits per character")
    axes.set_title("The champion's bits per character over time")
    axes.grid(True, alpha=0.3)
    axes.legend()
    _save(figure, path)
