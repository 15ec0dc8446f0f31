"""Recipe sweeps behind the default training config (docs/quality.md).

Two measurements on the splits of one stored dataset version:

    # validation/test bits per char after a fixed number of epochs; the cosine schedule
    # follows the epochs (not the clock), so a run on a shared CPU gives the same numbers
    python benchmarks/bench_recipe.py --storage STORE run gru:384:2:64 --dropout 0.1 --epochs 14
    # training characters/second of several cell:hidden:depth:batch shapes, side by side
    python benchmarks/bench_recipe.py --storage STORE speed gru:384:2:64 gru:384:2:128

Every option defaults to the default recipe (charlm/config.py). `--threads 1` pins
TensorFlow to one core (two such runs can share a 2-core machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charlm.config import ModelConfig, TrainConfig  # noqa: E402

MODEL, TRAIN = ModelConfig(), TrainConfig()  # the defaults of every option: the default recipe


def parse_shape(text: str) -> tuple[str, int, int, int]:
    """'gru:384:2:128' -> (cell, hidden, depth, batch)."""
    parts = text.split(":")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"expected cell:hidden:depth:batch, got {text!r}")
    cell, hidden, depth, batch = parts
    return cell, int(hidden), int(depth), int(batch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="charlm store")
    parser.add_argument("--dataset", default="latest", help="dataset id or alias")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train for a fixed number of epochs, score val and test")
    p.add_argument("shape", type=parse_shape)
    p.add_argument("--dropout", type=float, default=MODEL.dropout)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--learning-rate", type=float, default=TRAIN.learning_rate)
    p.add_argument("--ema", type=float, default=TRAIN.ema,
                   help="weight moving-average decay (0: off)")
    p.add_argument("--embedding", type=int, default=MODEL.embedding)
    p.add_argument("--weight-decay", type=float, default=TRAIN.weight_decay)
    p = sub.add_parser("speed", help="training characters/second of each shape")
    p.add_argument("shapes", type=parse_shape, nargs="+")
    p.add_argument("--seconds", type=float, default=25.0)
    args = parser.parse_args(argv)

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import Corpus
    from storage.datasets import read_texts
    from tasks.common import open_store

    store = open_store(args.storage)
    dataset_dir = store.path("datasets", store.resolve("datasets", args.dataset))
    train = Corpus.from_texts(read_texts(dataset_dir, "train"))
    if args.command == "speed":
        for cell, hidden, depth, batch in args.shapes:
            rate = train_speed(train, ModelConfig(cell=cell, hidden=hidden, depth=depth),
                               batch, args.seconds)
            print(f"{cell} {hidden}x{depth} batch {batch}: {rate:,.0f} chars/s "
                  f"({train.characters / rate:.0f} s per epoch)", flush=True)
        return

    from charlm.evaluate import evaluate
    from charlm.model import build_model, resolve_precision
    from charlm.train import Callback, fit

    cell, hidden, depth, batch = args.shape
    model_config = ModelConfig(cell=cell, hidden=hidden, depth=depth, dropout=args.dropout,
                               embedding=args.embedding)
    train_config = TrainConfig(batch_size=batch, epochs=args.epochs, max_minutes=10**6,
                               patience=args.epochs, learning_rate=args.learning_rate,
                               ema=args.ema, weight_decay=args.weight_decay)
    validation = Corpus.from_texts(read_texts(dataset_dir, "validation"))
    test = Corpus.from_texts(read_texts(dataset_dir, "test"))

    class PrintEpochs(Callback):
        def on_epoch_end(self, epoch: int, logs: dict) -> None:
            print(f"epoch {epoch}: train {logs['train_bpc']:.4f}, validation "
                  f"{logs['validation_bpc']:.4f} bits/char, {logs['seconds']:.0f} s", flush=True)

    model = build_model(model_config, precision=resolve_precision("auto"))
    start = time.perf_counter()
    fit(model, train, validation, train_config, callbacks=[PrintEpochs()])
    print(f"{cell} {hidden}x{depth} batch {batch} dropout {args.dropout} lr "
          f"{args.learning_rate} ema {args.ema} embedding {args.embedding} "
          f"weight decay {args.weight_decay} "
          f"{args.epochs} epochs: validation "
          f"{evaluate(model, validation)['bits_per_char']:.4f}, test "
          f"{evaluate(model, test)['bits_per_char']:.4f} bits/char "
          f"({(time.perf_counter() - start) / 60:.1f} min)")


def train_speed(train, model_config, batch: int, seconds: float) -> float:
    """Characters/second of `charlm.train.fit` on `train` within a `seconds` budget, tracing
    and the closing validation pass included (what a user's run of that length pays)."""
    from charlm.config import TrainConfig
    from charlm.model import build_model, resolve_precision
    from charlm.train import fit

    model = build_model(model_config, precision=resolve_precision("auto"))
    config = TrainConfig(batch_size=batch, epochs=1, max_minutes=seconds / 60.0)
    result = fit(model, train, train.take(np.arange(min(len(train), 500))), config)
    return result.characters / result.seconds


if __name__ == "__main__":
    main()
