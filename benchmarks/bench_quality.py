"""Quality benchmark: a charlm model against the Kneser-Ney n-gram on the same test split.

Both are scored in bits per character (every character plus the end marker) on the
test split of one dataset version; the n-gram is fitted on that version's train
split with its order tuned on the validation split. Optionally trains the charlm
model first through the same task the CLI runs (`charlm train`).

    python benchmarks/bench_quality.py --storage STORE [--model champion]
    python benchmarks/bench_quality.py --storage STORE \\
        --csv ../shared/data/abcnews-2003-02-to-09.csv --train-minutes 30 [--seed 1]

With --train-minutes the model is trained by `charlm train` itself with its defaults
(charlm.config) but for the time budget and the seed; any other option is one of `charlm
train`'s and is passed to it (e.g. `--hidden 512 --dropout 0.3`), to compare a candidate
recipe with the default on the same machine by the command a user runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ngram import KneserNeyLM, tune_order  # noqa: E402
from charlm.config import TrainConfig  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--storage", required=True, help="charlm store")
    parser.add_argument("--model", default="champion", help="model id or alias")
    parser.add_argument("--csv", help="ingest this CSV first (a new dataset version)")
    parser.add_argument("--train-minutes", type=float, default=0.0,
                        help="train a model with the default recipe for this long first")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed,
                        help="seed of weights, batches and dropout, as charlm train --seed")
    parser.add_argument("--max-order", type=int, default=12)
    parser.add_argument("--target-margin", type=float, default=0.06,
                        help="bits/char the model should be below the n-gram (issue 13)")
    args, train_options = parser.parse_known_args(argv)
    if train_options and not args.train_minutes:
        parser.error(f"{' '.join(train_options)}: options of charlm train shape the model "
                     "trained by --train-minutes; give --train-minutes too")
    train_argv = ["--storage", args.storage, "train", *train_options,
                  "--max-minutes", str(args.train_minutes), "--seed", str(args.seed)]
    if args.train_minutes:
        from cli.parser import UsageError, build_parser

        try:  # charlm train's own options and checks, before anything is opened
            build_parser().parse_args(train_argv)
        except UsageError as e:
            parser.error(str(e))

    from charlm.data import Corpus
    from charlm.evaluate import evaluate
    from charlm.model import load_model, read_config
    from storage.datasets import SPLITS, read_texts
    from storage.layout import ModelFiles
    from tasks.common import open_store

    store = open_store(args.storage)
    model_ref = args.model
    if args.csv:
        from tasks.ingest import ingest_csvs

        ingest_csvs.fn(args.storage, [args.csv])
    if args.train_minutes:
        from cli.main import main as charlm

        if charlm(train_argv) != 0:  # the command a user runs; it prints the new model's id
            sys.exit("charlm train failed (its error is above)")
        model_ref = "latest"
    model_id = store.resolve("models", model_ref)
    model_files = ModelFiles.at(store.path("models", model_id))
    dataset_id = read_config(model_files)[1]["dataset"]
    dataset_dir = store.path("datasets", dataset_id)
    splits = {s: read_texts(dataset_dir, s) for s in SPLITS}

    start = time.perf_counter()
    ngram = KneserNeyLM(max_order=args.max_order).fit(splits["train"])
    order, scores = tune_order(ngram, splits["validation"])
    ngram_test = ngram.bits_per_char(splits["test"], order)
    ngram_seconds = time.perf_counter() - start

    model, config = load_model(model_files)
    charlm_test = evaluate(model, Corpus.from_texts(splits["test"]))["bits_per_char"]
    summary = store.manifest("models", model_id)["summary"]

    print(f"dataset {dataset_id}: {len(splits['train'])} train / {len(splits['validation'])} "
          f"validation / {len(splits['test'])} test headlines")
    print("n-gram validation bits/char by order: "
          + ", ".join(f"{o}: {s:.3f}" for o, s in scores.items()))
    print(f"{'model':<44} {'test bits/char':>14}")
    print(f"{f'Kneser-Ney {order}-gram (fit {ngram_seconds:.0f} s)':<44} {ngram_test:>14.4f}")
    trained = f"{summary.get('seconds', 0) / 60:.1f} min" if "seconds" in summary else "?"
    if "epochs" in summary:
        trained += f", {summary['epochs']} epochs"
    label = f"charlm {config.cell} {config.hidden}x{config.depth} ({trained})"
    print(f"{label:<44} {charlm_test:>14.4f}")
    verdict = "BEATS" if charlm_test < ngram_test else "DOES NOT BEAT"
    print(f"charlm {verdict} the n-gram: {charlm_test:.4f} vs {ngram_test:.4f} "
          f"(difference {charlm_test - ngram_test:+.4f} bits/char)")
    margin = ngram_test - charlm_test
    print(f"margin: {margin:.4f} bits/char below the n-gram (target >= {args.target_margin}): "
          + ("PASS" if margin >= args.target_margin else "MISS"))


if __name__ == "__main__":
    main()
