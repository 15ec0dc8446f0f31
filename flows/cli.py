"""The `charlm` command line: the pipeline's stages run from a terminal, without a Prefect server.

Each command calls the same task functions the flows chain (through `.fn`).
Results go to stdout (the id or path as the last line; JSON for `evaluate`),
progress and messages to stderr. Usage errors exit 2, runtime errors exit 1,
each with one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from charlm.config import CELLS, IngestConfig, ModelConfig, SampleConfig, TrainConfig
from storage.datasets import SPLITS

KINDS = ("datasets", "models", "evaluations", "generations")
DEFAULT_MODEL, DEFAULT_TRAIN, DEFAULT_SAMPLE = ModelConfig(), TrainConfig(), SampleConfig()


class UsageError(Exception):
    """A bad argument: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message} (see --help)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> Parser:
    parser = Parser(prog="charlm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", metavar="DIR",
                        help="artifact store root (default: $CHARLM_STORAGE or ./charlm-store)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("ingest", help="publish a dataset version from headline CSVs")
    p.add_argument("csv", nargs="+", help="CSV files with publish_date,headline_text columns")
    p.add_argument("--lowercase", action="store_true", help="lowercase every headline")
    p.add_argument("--max-headline-length", "--max-length", type=positive_int,
                   default=IngestConfig.max_headline_length,
                   help="quarantine cleaned headlines longer than this (default %(default)s)")

    p = sub.add_parser("train", help="train a model on a dataset version")
    p.add_argument("--dataset", default="latest", help="dataset id or alias (default latest)")
    p.add_argument("--cell", choices=CELLS, default=DEFAULT_MODEL.cell)
    p.add_argument("--hidden", type=int, default=DEFAULT_MODEL.hidden)
    p.add_argument("--depth", type=int, default=DEFAULT_MODEL.depth)
    p.add_argument("--embedding", type=int, default=DEFAULT_MODEL.embedding,
                   help="embedding size; 0 = one-hot input as in the article")
    p.add_argument("--dropout", type=float, default=DEFAULT_MODEL.dropout)
    p.add_argument("--batch-size", type=int, default=DEFAULT_TRAIN.batch_size)
    p.add_argument("--epochs", type=int, default=DEFAULT_TRAIN.epochs)
    p.add_argument("--max-minutes", type=float, default=DEFAULT_TRAIN.max_minutes)
    p.add_argument("--learning-rate", type=float, default=DEFAULT_TRAIN.learning_rate)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="auto",
                   choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
                   help="auto = mixed_float16 on a GPU, mixed_bfloat16 on CPUs with bfloat16 "
                        "instructions, else float32")

    p = sub.add_parser("evaluate", help="bits per char and perplexity of a model (JSON)")
    p.add_argument("model", help="model id or alias (latest, champion)")
    p.add_argument("--dataset", default="latest", help="dataset id or alias (default latest)")
    p.add_argument("--split", default="test", choices=(*SPLITS, "all"))
    p.add_argument("--samples", type=int, default=1000,
                   help="headlines generated to measure novelty etc. (0 skips; default "
                        "%(default)s)")

    p = sub.add_parser("generate", help="generate headlines into a generation version")
    p.add_argument("model", help="model id or alias (latest, champion)")
    p.add_argument("-n", type=positive_int, default=20, help="number of headlines")
    p.add_argument("--top-p", type=float, default=DEFAULT_SAMPLE.top_p)
    p.add_argument("--temperature", type=float, default=DEFAULT_SAMPLE.temperature)
    p.add_argument("--top-k", type=int, default=DEFAULT_SAMPLE.top_k)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--max-new-chars", "--max-length", type=positive_int,
                   default=DEFAULT_SAMPLE.max_new_chars)
    p.add_argument("--seed", type=int, default=DEFAULT_SAMPLE.seed)
    p.add_argument("--prefix", action="append", default=[],
                   help="start headlines with this text (repeatable; rows cycle through them)")
    p.add_argument("--novel-only", action="store_true",
                   help="drop verbatim copies of training headlines (and draw replacements)")

    p = sub.add_parser("versions", help="list stored versions")
    p.add_argument("kind", nargs="?", choices=KINDS, help="one kind (default: all)")

    sub.add_parser("verify", help="check every stored version against its manifest")

    p = sub.add_parser("gc", help="remove old versions (dry run unless --apply)")
    p.add_argument("--keep", type=positive_int, default=5,
                   help="newest versions kept per kind (default %(default)s)")
    p.add_argument("--apply", action="store_true", help="really delete")

    p = sub.add_parser("import-article", help="publish a model saved by the article's save()")
    p.add_argument("directory", help="folder with vocabulary.txt, unit_type.txt, weights/, ...")

    p = sub.add_parser("compare", help="train rnn, gru and lstm on equal budgets and compare")
    p.add_argument("--dataset", default="latest", help="dataset id or alias (default latest)")
    p.add_argument("--cells", default="rnn,gru,lstm", help="comma-separated cell types")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--embedding", type=int, default=DEFAULT_MODEL.embedding)
    p.add_argument("--batch-size", type=int, default=DEFAULT_TRAIN.batch_size)
    p.add_argument("--max-minutes", type=float, default=5.0,
                   help="training budget per model (default %(default)s)")
    p.add_argument("--samples", type=int, default=200,
                   help="headlines generated per model for quality metrics")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("demo", help="ingest the embedded corpus, train, evaluate, generate")
    p.add_argument("--headlines", type=positive_int, default=12000,
                   help="size of the generated demo corpus (default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=1.5,
                   help="training budget in minutes (default %(default)s)")
    p.add_argument("-n", type=positive_int, default=20, help="headlines to generate")
    p.add_argument("--seed", type=int, default=0)
    return parser


def out(text: str) -> None:
    print(text, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class StderrHandler(logging.Handler):
    """Log records as plain lines on whatever sys.stderr is at the time of the call."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def progress_callbacks() -> list:
    """A one-line training progress bar on stderr, when stderr is a terminal."""
    if not sys.stderr.isatty():
        return []
    from charlm.train import Callback

    class ProgressBar(Callback):
        def on_batch_end(self, step: int, logs: dict[str, Any]) -> None:
            if step % 10 and logs["batch"] != logs["batches"]:
                return
            done = logs["batch"] / logs["batches"]
            bar = "#" * int(30 * done)
            sys.stderr.write(f"\r  epoch {logs['epoch']} [{bar:<30}] {100 * done:5.1f}% "
                             f"{logs['bits_per_char']:.3f} bits/char")
            sys.stderr.flush()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
            sys.stderr.write("\r" + " " * 72 + "\r")

    return [ProgressBar()]


def train_configs(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    model = ModelConfig(cell=args.cell, hidden=args.hidden, depth=args.depth,
                        embedding=args.embedding, dropout=args.dropout, seed=args.seed)
    train = TrainConfig(batch_size=args.batch_size, epochs=args.epochs,
                        max_minutes=args.max_minutes, learning_rate=args.learning_rate,
                        min_learning_rate=min(DEFAULT_TRAIN.min_learning_rate,
                                              args.learning_rate),
                        seed=args.seed)
    return model, train


def sample_config(args: argparse.Namespace) -> SampleConfig:
    return SampleConfig(top_p=args.top_p, temperature=args.temperature, top_k=args.top_k,
                        greedy=args.greedy, max_new_chars=args.max_new_chars, seed=args.seed)


def cmd_ingest(args: argparse.Namespace) -> Callable[[], None]:
    config = IngestConfig(max_headline_length=args.max_headline_length, lowercase=args.lowercase)

    def run() -> None:
        from tasks.ingest import ingest_csvs

        outcome = ingest_csvs.fn(args.storage, args.csv, config)  # logs its summary
        if outcome.dataset_id is None:
            raise RuntimeError("no dataset version exists and the files held no usable rows")
        out(outcome.dataset_id)

    return run


def cmd_train(args: argparse.Namespace) -> Callable[[], None]:
    model_config, train_config = train_configs(args)

    def run() -> None:
        from tasks.promote import promote_if_unset
        from tasks.train import train_model

        callbacks = progress_callbacks()
        outcome = train_model.fn(args.storage, args.dataset, model_config, train_config,
                                 args.precision, callbacks)
        promote_if_unset.fn(args.storage, outcome.model_id)  # logs when it promotes
        out(outcome.model_id)

    return run


def cmd_evaluate(args: argparse.Namespace) -> Callable[[], None]:
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")

    def run() -> None:
        from tasks.evaluate import evaluate_model

        outcome = evaluate_model.fn(args.storage, args.model, args.dataset, args.split,
                                    args.samples)
        err(f"published evaluation {outcome.evaluation_id}; report: {outcome.report}")
        out(json.dumps(outcome.metrics, indent=2))

    return run


def cmd_generate(args: argparse.Namespace) -> Callable[[], None]:
    config = sample_config(args)

    def run() -> None:
        from tasks.generate import generate_headlines

        outcome = generate_headlines(args.storage, args.model, args.n, config, args.prefix,
                                     args.novel_only)
        err(f"published generation {outcome.generation_id}: {outcome.headlines} headlines "
            f"({outcome.truncated} hit max length"
            + (f", {outcome.dropped_copies} training copies dropped" if args.novel_only else "")
            + ")")
        out(outcome.path)

    return run


def cmd_versions(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from tasks.common import open_store

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

    return run


def describe(kind: str, summary: dict[str, Any]) -> str:
    if kind == "datasets":
        return f"{summary.get('rows', '?')} headlines"
    if kind == "models":
        bpc = summary.get("validation_bpc")
        return f"validation {bpc:.4f} bits/char" if isinstance(bpc, float) else ""
    if kind == "evaluations":
        bpc = summary.get("bits_per_char")
        return f"{summary.get('split', '')} {bpc:.4f} bits/char" if bpc is not None else ""
    return f"{summary.get('headlines', '?')} headlines"


def cmd_verify(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from tasks.common import open_store

        problems = open_store(args.storage).verify()
        for p in problems:
            out(f"{p.kind}/{p.id}: {p.file}: {p.reason}")
        if problems:
            raise RuntimeError(f"{len(problems)} problem(s) found")
        err("every version matches its manifest")
        out("ok")

    return run


def cmd_gc(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from tasks.common import open_store

        removed = open_store(args.storage).gc(keep=args.keep, apply=args.apply)
        verb = "removed" if args.apply else "would remove"
        for kind, vid in removed:
            out(f"{verb} {kind}/{vid}")
        err(f"{verb} {len(removed)} version(s)" + ("" if args.apply else "; use --apply"))

    return run


def cmd_import_article(args: argparse.Namespace) -> Callable[[], None]:
    def run() -> None:
        from tasks.importer import import_article

        out(import_article.fn(args.storage, args.directory))

    return run


def cmd_compare(args: argparse.Namespace) -> Callable[[], None]:
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise ValueError(f"--cells takes {', '.join(CELLS)}; got {args.cells!r}")
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")
    model_config = ModelConfig(hidden=args.hidden, depth=args.depth, embedding=args.embedding,
                               seed=args.seed)
    train_config = TrainConfig(batch_size=args.batch_size, epochs=1000,
                               max_minutes=args.max_minutes, seed=args.seed,
                               patience=1000)  # equal budgets: time, not early stopping

    def run() -> None:
        from tasks.compare import compare_architectures

        outcome = compare_architectures(args.storage, args.dataset, cells, model_config,
                                        train_config, args.samples)
        err(open(outcome.table).read())
        err(f"plot: {outcome.plot}")
        out(outcome.table)

    return run


def cmd_demo(args: argparse.Namespace) -> Callable[[], None]:
    model_config = ModelConfig(cell="gru", hidden=128, depth=1, embedding=32, dropout=0.0,
                               seed=args.seed)
    train_config = TrainConfig(batch_size=64, epochs=20, max_minutes=args.max_minutes,
                               learning_rate=5e-3, seed=args.seed)
    sample = SampleConfig(seed=args.seed)

    def run() -> None:
        from tasks.common import open_store
        from tasks.evaluate import evaluate_model
        from tasks.generate import generate_headlines
        from tasks.ingest import ingest_csvs, write_demo_corpus
        from tasks.promote import promote_if_unset
        from tasks.train import train_model

        start = time.monotonic()
        store = open_store(args.storage)
        csv = write_demo_corpus.fn(args.storage, args.headlines, args.seed)
        err(f"[1/4] wrote the embedded demo corpus: {csv}")
        ingested = ingest_csvs.fn(args.storage, [csv], IngestConfig())
        err(f"[2/4] training {model_config.cell} {model_config.hidden}x{model_config.depth} "
            f"for up to {args.max_minutes} min")
        callbacks = progress_callbacks()
        trained = train_model.fn(args.storage, ingested.dataset_id, model_config, train_config,
                                 "auto", callbacks)
        promote_if_unset.fn(args.storage, trained.model_id)
        evaluation = evaluate_model.fn(args.storage, trained.model_id, ingested.dataset_id,
                                       "test", 1000)
        m = evaluation.metrics
        err(f"[3/4] test: {m['bits_per_char']:.4f} bits/char, perplexity "
            f"{m['perplexity']:.3f} over {m['characters']} characters; of 1000 samples "
            f"{m['novelty']:.0%} are novel, {m['word_validity']:.0%} of words are known; "
            f"report: {evaluation.report}")
        generated = generate_headlines(args.storage, trained.model_id, args.n, sample)
        err(f"[4/4] {generated.headlines} generated headlines (top-p {sample.top_p}):")
        with open(generated.path) as f:
            for line in f:
                err("    " + line.rstrip("\n"))
        err(f"\nartifacts in {store.root.resolve()} ({time.monotonic() - start:.0f} s):")
        err(f"  dataset    {ingested.dataset_id}")
        err(f"  model      {trained.model_id}")
        err(f"  evaluation {evaluation.evaluation_id}")
        err(f"  generation {generated.generation_id}")
        out(json.dumps({k: m[k] for k in ("bits_per_char", "perplexity")}))
        out(generated.path)

    return run


COMMANDS: dict[str, Callable[[argparse.Namespace], Callable[[], None]]] = {
    "ingest": cmd_ingest, "train": cmd_train, "evaluate": cmd_evaluate,
    "generate": cmd_generate, "versions": cmd_versions, "verify": cmd_verify, "gc": cmd_gc,
    "import-article": cmd_import_article, "compare": cmd_compare, "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ log lines (cuInit failures on CPU machines, oneDNN notes) are noise here.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logger = logging.getLogger("charlm")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        logger.addHandler(StderrHandler())
        logger.propagate = False
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        err(str(e))
        return 2
    try:
        run = COMMANDS[args.command](args)  # validates arguments into configs
    except ValueError as e:
        err(f"charlm {args.command}: {e}")
        return 2
    try:
        run()
    except KeyboardInterrupt:
        err("charlm: interrupted")
        return 130
    except Exception as e:  # one line for users; --debug shows the traceback
        if debug:
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        err(f"charlm: error: {message}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
