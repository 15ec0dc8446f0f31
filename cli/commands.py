"""The `charlm` commands: each turns arguments into configs, then runs an operation of tasks/.

A command is `cmd_<name>(args) -> run`: building the configs validates the arguments (a
ValueError there is a usage error, exit 2) before `run()` does the work (errors exit 1).
Results go to stdout (the id or path as the last line; JSON for `evaluate`), progress and
messages to stderr. Heavy modules (TensorFlow) are imported inside `run`, so `--help` and
bad arguments answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from charlm.config import CELLS, IngestConfig, ModelConfig, SampleConfig, TrainConfig
from storage import KINDS
from tasks import presets
from tasks.common import open_store, run_task

Command = Callable[[argparse.Namespace], Callable[[], None]]


def out(text: str) -> None:
    print(text, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_ingest(args: argparse.Namespace) -> Callable[[], None]:
    cleaning = IngestConfig(max_headline_length=args.max_headline_length,
                            lowercase=args.lowercase, normalise=args.normalise)

    def run() -> None:
        from tasks.ingest import ingest_csvs

        outcome = run_task(ingest_csvs, args.storage, args.csv, cleaning)  # logs a summary
        if outcome.dataset_id is None:
            raise RuntimeError("no dataset version exists and the files held no usable rows")
        if outcome.published and not args.no_drift:
            from tasks.drift import record_drift

            record_drift(args.storage, outcome.dataset_id)  # logs its result; never raises
        out(outcome.dataset_id)

    return run


def cmd_ingest_feed(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from tasks.feeds import ingest_feeds

        # logs one line per feed and the buffer's state; failed feeds do not stop the rest
        feeds = ingest_feeds(args.storage, args.url, args.min_new, args.max_wait_hours,
                             drift=not args.no_drift)
        if feeds.dataset_id is not None:
            out(feeds.dataset_id)
        feeds.raise_for_errors()

    return run


def cmd_train(args: argparse.Namespace) -> Callable[[], None]:
    given = {name: getattr(args, name) for name in
             ("cell", "hidden", "depth", "embedding", "dropout", "weight_drop")
             if getattr(args, name) is not None}
    given["seed"] = args.seed
    network = ModelConfig(**given)  # validates the options, --from or not
    start = None
    if args.from_model is not None:
        from tasks.warm import start_network

        # The network is the starting model's; checked now, before anything trains.
        start, network = start_network(args.storage, args.from_model, given)
    # --peak-lr, when given, is the peak of a cold run and of a warm one alike.
    peak = args.learning_rate
    rates = {} if peak is None else {"learning_rate": peak, "warm_learning_rate": peak}
    training = TrainConfig(batch_size=args.batch_size, epochs=args.epochs,
                           max_minutes=args.max_minutes, weight_decay=args.weight_decay,
                           ema=args.ema, recent_repeats=args.recent_repeats,
                           recent_days=args.recent_days, seed=args.seed, **rates)
    if peak is not None and peak > 0:
        training = replace(training, min_learning_rate=min(training.min_learning_rate, peak))

    def run() -> None:
        from tasks.callbacks import terminal_progress
        from tasks.champion import train_challenger

        challenge = train_challenger(args.storage, args.dataset, network, training,
                                     args.precision, terminal_progress(), args.devices, start)
        model_id = challenge.trained.model_id
        champion = challenge.champion
        versus = (f" vs champion {champion.model_id} {challenge.champion_bpc:.4f}"
                  if champion else "")
        warm = f" (warm from {start})" if start else ""
        err(f"model {model_id}{warm}: test {challenge.challenger_bpc:.4f} bits/char{versus}; "
            + ("promoted to champion" if challenge.promoted else "not promoted"))
        out(model_id)

    return run


def cmd_evaluate(args: argparse.Namespace) -> Callable[[], None]:
    from cli.parser import EVALUATE_DATASET, EVALUATE_SPLIT

    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")
    if args.csv and (args.dataset or args.split):
        raise ValueError("--csv scores files, not a dataset: drop --dataset/--split")

    def run() -> None:
        from tasks.evaluate import evaluate_csvs, evaluate_model

        if args.csv:
            outcome = run_task(evaluate_csvs, args.storage, args.model, args.csv, args.samples)
        else:
            outcome = run_task(evaluate_model, args.storage, args.model,
                               args.dataset or EVALUATE_DATASET, args.split or EVALUATE_SPLIT,
                               args.samples)
        err(f"published evaluation {outcome.evaluation_id}; report: {outcome.report}")
        out(json.dumps(outcome.metrics, indent=2))

    return run


def cmd_generate(args: argparse.Namespace) -> Callable[[], None]:
    sampling = SampleConfig(top_p=args.top_p, temperature=args.temperature, top_k=args.top_k,
                            greedy=args.greedy, max_new_chars=args.max_new_chars,
                            seed=args.seed)

    def run() -> None:
        from tasks.generate import generate_headlines

        outcome = generate_headlines(args.storage, args.model, args.n, sampling, args.prefix,
                                     args.novel_only)
        err(f"published generation {outcome.generation_id}: {outcome.headlines} headlines "
            f"({outcome.truncated} hit the length limit"
            + (f", {outcome.dropped_copies} training copies dropped" if args.novel_only else "")
            + ")")
        out(outcome.path)

    return run


def cmd_promote(args: argparse.Namespace) -> Callable[[], None]:
    if not args.reason.strip():
        raise ValueError("--reason must say why (it is recorded in the alias history)")

    def run() -> None:
        from tasks.champion import promote

        out(run_task(promote, args.storage, args.model, f"by hand: {args.reason.strip()}"))

    return run


def describe(kind: str, summary: dict[str, Any]) -> str:
    """What `charlm versions` says about one version."""
    if kind == "datasets":
        return f"{summary.get('rows', '?')} headlines"
    if kind == "models":
        bpc = summary.get("validation_bpc")
        return f"validation {bpc:.4f} bits/char" if isinstance(bpc, float) else ""
    if kind == "evaluations" and summary.get("drift") == "batch":
        return (f"drift: {summary.get('new_rows')} new headlines "
                f"{summary.get('bits_per_char', float('nan')):.4f} bits/char")
    if kind == "evaluations" and summary.get("drift") == "trend":
        return f"drift trend: {summary.get('points')} points"
    if kind == "evaluations":
        bpc = summary.get("bits_per_char")
        scored = summary.get("split") or ",".join(summary.get("files") or [])
        return f"{scored} {bpc:.4f} bits/char" if bpc is not None else ""
    return f"{summary.get('headlines', '?')} headlines"


def cmd_versions(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        store = open_store(args.storage)
        for kind in [args.kind] if args.kind else KINDS:
            aliases: dict[str, list[str]] = {}
            for name, vid in store.aliases(kind).items():
                aliases.setdefault(vid, []).append(name)
            for manifest in store.versions(kind):
                vid = manifest["id"]
                tags = ",".join(sorted(aliases.get(vid, [])))
                parents = " ".join(f"{k}:{','.join(v)}" for k, v in manifest["parents"].items())
                out(f"{kind:<12} {vid}  {tags:<16} {describe(kind, manifest['summary'])}"
                    + (f"  <- {parents}" if parents else ""))
            for change in store.alias_history(kind):
                out(f"{kind:<12} alias {change['alias']} -> {change['id']} at "
                    f"{change['time']}: {change['reason'] or '(no reason given)'}")

    return run


def cmd_verify(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        problems = open_store(args.storage).verify(quick=args.quick)
        for p in problems:
            out(f"{p.kind}/{p.id}: {p.file}: {p.reason}")
        if problems:
            raise RuntimeError(f"{len(problems)} problem(s) found")
        err("every manifest, parent and alias is whole (files not hashed: --quick)"
            if args.quick else "every version matches its manifest")
        out("ok")

    return run


def cmd_status(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from tasks.status import pipeline_status, render_status

        facts = pipeline_status(args.storage)  # reads only; an absent store is reported
        out(json.dumps(facts, indent=2) if args.json else render_status(facts))

    return run


def cmd_kernels(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from charlm import kernels
        from charlm.recurrent import check_kernels

        if not any(kernels.library_path(folder).exists()
                   for folder in (kernels.cache_dir(), kernels.fallback_dir())):
            err(f"building the fused CPU kernels in {kernels.cache_dir()} (about 15 s, once "
                "per machine)")
        try:
            built = kernels.prepare()  # builds them once; the cause when they cannot be
            check_kernels()  # a build that loads but computes wrong fails here
        except kernels.KernelsUnavailable as error:
            raise RuntimeError(f"{error}; training runs Keras' loops ({kernels.SLOWER})") from None
        here = kernels.status()  # what a training at the default precision takes here
        out("kernels    built and checked: the LSTM, the GRU and the loss match Keras' and "
            "TensorFlow's ops, NaN included")
        out(f"cpu        {' '.join(built.cpu_features) or 'no SIMD extension'} "
            "(compiled with -march=native)")
        out(f"training   {here.describe()}")
        out(f"folder     {built.folder}")
        out(str(built.library))

    return run


def cmd_gc(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        removed = open_store(args.storage).gc(keep=args.keep, apply=args.apply,
                                              retention_s=args.retention_days * 86400.0)
        verb = "removed" if args.apply else "would remove"
        for kind, vid in removed:
            out(f"{verb} {kind}/{vid}")
        err(f"{verb} {len(removed)} version(s)" + ("" if args.apply else "; use --apply"))

    return run


def cmd_import_article(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from tasks.importer import import_article

        out(run_task(import_article, args.storage, args.directory))

    return run


def cmd_compare(args: argparse.Namespace) -> Callable[[], None]:
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise ValueError(f"--cells takes {', '.join(CELLS)}; got {args.cells!r}")
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")
    network = replace(presets.COMPARE_NETWORK, hidden=args.hidden, depth=args.depth,
                      embedding=args.embedding, seed=args.seed)
    training = replace(presets.COMPARE_TRAINING, batch_size=args.batch_size,
                       max_minutes=args.max_minutes, seed=args.seed)

    def run() -> None:
        from tasks.compare import compare_architectures

        outcome = compare_architectures(args.storage, args.dataset, cells, network, training,
                                        args.samples)
        with open(outcome.table) as table:
            err(table.read())
        err(f"plot: {outcome.plot}")
        out(outcome.table)

    return run


def cmd_drift(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from tasks.drift import publish_drift_trend

        trend = run_task(publish_drift_trend, args.storage)
        with open(trend.table) as table:
            out(table.read().rstrip("\n"))
        err(f"published drift trend {trend.evaluation_id}")
        out(trend.plot)

    return run


def cmd_demo(args: argparse.Namespace) -> Callable[[], None]:
    if args.max_minutes <= 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")

    def run() -> None:
        from tasks.callbacks import terminal_progress
        from tasks.demo import run_demo
        from tasks.generate import read_generated

        demo = run_demo(args.storage, args.headlines, args.max_minutes, args.n, args.seed,
                        terminal_progress())
        generated = demo.generated
        err(f"[4/4] {generated.headlines} generated headlines (top-p "
            f"{SampleConfig().top_p}):")
        for record in read_generated(generated):
            err("    " + record["text"])
        err(f"\nartifacts in {open_store(args.storage).root} ({demo.seconds:.0f} s):")
        err(f"  dataset    {demo.ingested.dataset_id}")
        err(f"  model      {demo.challenge.trained.model_id}"
            + (" (champion)" if demo.challenge.promoted else ""))
        err(f"  evaluation {demo.challenge.challenger.evaluation_id}")
        err(f"  generation {generated.generation_id}")
        metrics = demo.challenge.challenger.metrics
        out(json.dumps({k: metrics[k] for k in ("bits_per_char", "perplexity")}))
        out(generated.path)

    return run


COMMANDS: dict[str, Command] = {
    "ingest": cmd_ingest, "ingest-feed": cmd_ingest_feed, "train": cmd_train,
    "evaluate": cmd_evaluate, "generate": cmd_generate, "promote": cmd_promote,
    "versions": cmd_versions, "status": cmd_status, "kernels": cmd_kernels,
    "verify": cmd_verify, "gc": cmd_gc, "import-article": cmd_import_article,
    "compare": cmd_compare, "drift": cmd_drift, "demo": cmd_demo,
}
