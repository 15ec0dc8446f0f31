"""The `charlm` command line's arguments: one subcommand per operation, every option with
help text that shows its default (defaults come from the config dataclasses and the
operations, never repeated here)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from charlm.config import (
    CELLS,
    PRECISIONS,
    IngestConfig,
    ModelConfig,
    SampleConfig,
    TrainConfig,
)
from storage import KINDS, one_line
from storage.datasets import RECENT, RECENT_DAYS, SPLITS, check_split
from tasks import presets

DEFAULT_MODEL, DEFAULT_TRAIN = ModelConfig(), TrainConfig()
EVALUATE_DATASET, EVALUATE_SPLIT = "latest", "test"  # what `evaluate` scores without --csv
DEFAULT_SAMPLE, DEFAULT_INGEST = SampleConfig(), IngestConfig()


class UsageError(Exception):
    """A bad argument: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        command = self.prog.split(maxsplit=1)[1:]  # "charlm ingest" -> the subcommand
        raise UsageError(one_line(command[0] if command else None, f"{message} (see --help)"))


def devices_arg(text: str) -> int | str:
    from charlm.devices import parse_devices  # light: TensorFlow is imported, not started

    try:
        return parse_devices(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _no_drift(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-drift", action="store_true",
                   help="do not score the champion on the new headlines (drift is recorded "
                        "unless given) (default: off)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def split_name(text: str) -> str:
    """A dataset view for --split: a hash split, all, or recent[:DAYS]."""
    try:
        return str(check_split(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="latest",
                   help="dataset version id, unique id prefix or alias (default: %(default)s)")


_SHAPE_HELP = {"hidden": "units per recurrent layer", "depth": "stacked recurrent layers",
               "embedding": "embedding size; 0 = one-hot input as in the article"}


# `charlm train`'s optimisation options: TrainConfig field -> help text
_RECIPE_HELP = {
    "epochs": "most epochs to train; on a CPU the time budget usually ends the run first",
    "weight_decay": "decoupled (AdamW) decay of every weight but the biases; 0 disables",
    "ema": "validate and save an exponential moving average of the weights with this decay; "
           "0 = the raw weights",
    "recent_repeats": "recency weighting: see each training headline of the newest "
                      "--recent-days days this many times an epoch; 1 = off",
    "recent_days": "the window of --recent-repeats, in days of publish dates",
}


FROM_MODEL = "; with --from: the model's"  # what a network option defaults to when warm


def _model_shape(p: argparse.ArgumentParser, defaults: ModelConfig, warm: bool = False) -> None:
    """The network's shape options; with `warm` (train), None unless given, so that --from
    can tell an option the user gave (a conflict) from a default."""
    for field, text in _SHAPE_HELP.items():
        default = getattr(defaults, field)
        p.add_argument(f"--{field}", type=int, default=None if warm else default,
                       help=f"{text} (default: {default}{FROM_MODEL if warm else ''})")


def _budget(p: argparse.ArgumentParser, defaults: TrainConfig, what: str) -> None:
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="headlines per batch (default: %(default)s)")
    p.add_argument("--max-minutes", type=float, default=defaults.max_minutes,
                   help=f"wall-clock training budget{what} in minutes (default: %(default)s)")


def _seed(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--seed", type=int, default=0, help=f"seed of {what} (default: %(default)s)")


def build_parser() -> Parser:
    parser = Parser(prog="charlm", description="Character-level language models of news "
                    "headlines: ingest, train, evaluate, generate, without a Prefect server.")
    parser.add_argument("--storage", metavar="DIR|URL",
                        help="artifact store: a directory or an object store URL such as "
                             "s3://bucket/prefix (default: $CHARLM_STORAGE, else "
                             "./charlm-store)")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks on errors and TensorFlow's native log lines "
                             "(default: off)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("ingest", help="publish a dataset version from headline CSVs")
    p.add_argument("csv", nargs="+", help="CSV files with publish_date,headline_text columns")
    p.add_argument("--lowercase", action="store_true",
                   help="lowercase every headline (default: off)")
    p.add_argument("--max-headline-length", "--max-length", type=positive_int,
                   default=DEFAULT_INGEST.max_headline_length, metavar="N",
                   help="quarantine cleaned headlines longer than N characters "
                        "(default: %(default)s)")
    p.add_argument("--normalise", action="store_true",
                   help="map every headline to the ABC style (lowercase a-z, digits, single "
                        "spaces: \"PM's $1.5b plan\" -> \"pms 15b plan\"; default: off)")
    _no_drift(p)

    p = sub.add_parser("ingest-feed", help="poll RSS/Atom feeds into the buffer; publish it "
                                           "as a dataset version when enough has arrived")
    p.add_argument("url", nargs="+", help="feed URLs (RSS 2.0 or Atom), e.g. "
                                          + " ".join(presets.FEED_URLS))
    p.add_argument("--min-new", type=positive_int, default=presets.FEED_MIN_NEW, metavar="N",
                   help="publish once N new headlines wait in the buffer "
                        "(default: %(default)s)")
    p.add_argument("--max-wait-hours", type=non_negative_float,
                   default=presets.FEED_MAX_WAIT_HOURS, metavar="H",
                   help="publish anyway once the oldest waiting headline is H hours old "
                        "(default: %(default)s)")
    _no_drift(p)

    p = sub.add_parser("train", help="train a model; it becomes champion if it beats the "
                                     "champion on the test split")
    _dataset(p)
    p.add_argument("--from", dest="from_model", metavar="MODEL",
                   help="start from this model's weights (id, unique id prefix or alias such "
                        "as champion): its network, a fresh optimizer, peak --peak-lr "
                        "(default: none, random weights)")
    p.add_argument("--cell", choices=CELLS, default=None,
                   help=f"recurrent cell type (default: {DEFAULT_MODEL.cell}{FROM_MODEL})")
    _model_shape(p, DEFAULT_MODEL, warm=True)
    p.add_argument("--dropout", type=float, default=None,
                   help="dropout between layers and before the softmax (default: "
                        f"{DEFAULT_MODEL.dropout}{FROM_MODEL})")
    p.add_argument("--weight-drop", type=float, default=None, metavar="RATE",
                   help="DropConnect on the recurrent kernels while training (AWD-LSTM's "
                        f"weight drop; default: {DEFAULT_MODEL.weight_drop}{FROM_MODEL})")
    _budget(p, DEFAULT_TRAIN, "")
    p.add_argument("--peak-lr", "--learning-rate", dest="learning_rate", type=float,
                   default=None, metavar="LR",
                   help=f"peak learning rate after the warm-up (default: "
                        f"{DEFAULT_TRAIN.learning_rate}; with --from: "
                        f"{DEFAULT_TRAIN.warm_learning_rate})")
    for field, text in _RECIPE_HELP.items():
        default = getattr(DEFAULT_TRAIN, field)
        p.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default,
                       help=f"{text} (default: %(default)s)")
    _seed(p, "weights, batches and dropout")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = mixed_float16 on a GPU, mixed_bfloat16 on CPUs with bfloat16 "
                        "instructions, else float32 (default: %(default)s)")
    p.add_argument("--devices", type=devices_arg, default=1, metavar="N|all",
                   help="train on N GPUs (MirroredStrategy, each batch split across them) or "
                        "all of them; on a machine without GPUs, N logical CPU devices "
                        "(default: %(default)s)")

    p = sub.add_parser("evaluate", help="bits per char and perplexity of a model on a "
                                        "dataset's split or on CSV files (JSON)")
    p.add_argument("model", help="model id or alias (latest, champion)")
    p.add_argument("--dataset", help="dataset version id, unique id prefix or alias "
                                     f"(default: {EVALUATE_DATASET})")
    p.add_argument("--split", type=split_name, metavar="SPLIT",
                   help=f"the dataset's view to score: {', '.join(SPLITS)}, all, or "
                        f"{RECENT}[:DAYS] (the newest DAYS of publish dates, DAYS "
                        f"{RECENT_DAYS} if not given) (default: {EVALUATE_SPLIT})")
    p.add_argument("--csv", nargs="+", metavar="FILE",
                   help="score the headlines of these CSV files instead (cleaned as "
                        "`ingest` would, nothing ingested; not with --dataset/--split) "
                        "(default: none)")
    p.add_argument("--samples", type=int, default=presets.EVALUATION_SAMPLES,
                   help="headlines generated to measure novelty etc.; 0 skips "
                        "(default: %(default)s)")

    sub.add_parser("drift", help="the champion's bits per char on each new batch and after "
                                 "each retrain: a table and a plot, published")

    p = sub.add_parser("generate", help="generate headlines into a generation version")
    p.add_argument("model", help="model id or alias (latest, champion)")
    p.add_argument("-n", type=positive_int, default=presets.GENERATE_N,
                   help="number of headlines (default: %(default)s)")
    p.add_argument("--top-p", type=float, default=DEFAULT_SAMPLE.top_p,
                   help="nucleus sampling: the article's threshold (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=DEFAULT_SAMPLE.temperature,
                   help="softmax temperature (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=DEFAULT_SAMPLE.top_k,
                   help="sample among the k likeliest characters; 0 = off (default: "
                        "%(default)s)")
    p.add_argument("--greedy", action="store_true",
                   help="always take the likeliest character (default: off)")
    p.add_argument("--max-new-chars", "--max-length", type=positive_int,
                   default=DEFAULT_SAMPLE.max_new_chars, metavar="N",
                   help="stop a headline after N generated characters (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SAMPLE.seed,
                   help="sampling seed (default: %(default)s)")
    p.add_argument("--prefix", action="append", default=[],
                   help="start headlines with this text; repeatable, rows cycle through them "
                        "(default: none)")
    p.add_argument("--novel-only", action="store_true",
                   help="drop verbatim copies of training headlines and draw replacements "
                        "(default: off)")

    p = sub.add_parser("promote", help="make a model the champion by hand, with a reason")
    p.add_argument("model", help="model id, unique id prefix or alias")
    p.add_argument("--reason", required=True,
                   help="why (recorded in the alias history; required, no default)")

    p = sub.add_parser("versions", help="list stored versions, aliases and the alias history")
    p.add_argument("kind", nargs="?", choices=KINDS, help="one kind (default: all)")

    p = sub.add_parser("verify", help="check every stored version against its manifest")
    p.add_argument("--quick", action="store_true",
                   help="manifests, parents and aliases only: no file is read or hashed "
                        "(default: hash every file)")

    p = sub.add_parser("status", help="the pipeline's state on one screen: champion, data, "
                                      "drift, feeds, last runs, integrity (never writes)")
    p.add_argument("--json", action="store_true",
                   help="the same facts as JSON, for scripts and monitoring (default: off)")

    what = ("build and check the fused CPU recurrent kernels ahead of time (once per "
            "machine): where they are, which CPU features they use; exit 1 naming why they "
            "cannot be built")
    sub.add_parser("kernels", help=what, description=(
        f"{what[0].upper()}{what[1:]} (training then runs Keras' loops, about 2x slower). "
        "The build is cached in $CHARLM_KERNEL_DIR, else $XDG_CACHE_HOME/charlm/kernels, else "
        "~/.cache/charlm/kernels, else $TMPDIR/charlm-kernels-UID (also where a read-only "
        "cache's build goes); prints the CPU features, the recurrent path a training takes "
        "here, the folder and, last, the library. CHARLM_KERNELS=0 turns them off."))

    p = sub.add_parser("gc", help="remove old versions (dry run unless --apply)")
    p.add_argument("--keep", type=positive_int, default=5,
                   help="newest versions kept per kind (default: %(default)s)")
    p.add_argument("--apply", action="store_true", help="really delete (default: off)")
    p.add_argument("--retention-days", type=non_negative_float, default=7.0,
                   help="uploads no commit names are removed once this old: an interrupted "
                        "publish, never one in progress (default: %(default)s)")

    p = sub.add_parser("import-article", help="publish a model saved by the article's save()")
    p.add_argument("directory", help="folder with vocabulary.txt, unit_type.txt, weights/, ...")

    p = sub.add_parser("compare", help="train rnn, gru and lstm on equal budgets and compare")
    _dataset(p)
    p.add_argument("--cells", default=",".join(presets.COMPARE_CELLS),
                   help="comma-separated cell types (default: %(default)s)")
    _model_shape(p, presets.COMPARE_NETWORK)
    _budget(p, presets.COMPARE_TRAINING, " per model,")
    p.add_argument("--samples", type=int, default=presets.COMPARE_SAMPLES,
                   help="headlines generated per model for quality metrics "
                        "(default: %(default)s)")
    _seed(p, "weights and batches")

    p = sub.add_parser("demo", help="the whole pipeline on the embedded corpus")
    p.add_argument("--headlines", type=positive_int, default=presets.DEMO_HEADLINES,
                   help="size of the generated demo corpus (default: %(default)s)")
    p.add_argument("--max-minutes", type=float, default=presets.DEMO_TRAINING.max_minutes,
                   help="training budget in minutes (default: %(default)s)")
    p.add_argument("-n", type=positive_int, default=presets.DEMO_N,
                   help="headlines to generate (default: %(default)s)")
    _seed(p, "the corpus, the model and the sampling")
    return parser
