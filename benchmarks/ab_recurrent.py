"""A/B of charlm's recurrent paths: `charlm.train.fit` with Keras' own loop (the path before
issue 19), with charlm.recurrent in plain TensorFlow ops (`gru` only; what runs where the
kernels cannot be built) and with the fused gate kernels (charlm.kernels), interleaved in
one process, same seed: each epoch's train seconds and train / validation bits per char
(the curves must agree).

    .venv/bin/python -m benchmarks.ab_recurrent --rows 3000 --epochs 5
    .venv/bin/python -m benchmarks.ab_recurrent --cell lstm --hidden 128 --precision float32
    .venv/bin/python -m benchmarks.ab_recurrent --cell lstm --hidden 512 --depth 3 --batch 1024
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    DEFAULT_CSV,
    add_shape_options,
    load_headlines,
    split_headlines,
)

PATHS = ("keras", "plain", "fused")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("gru", "lstm"), default="gru")
    add_shape_options(parser, hidden=384)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.15)
    parser.add_argument("--rows", type=int, default=3000, help="first CSV rows")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=None,
                        help="default: keras and fused (and plain for the GRU)")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = parser.parse_args(argv)

    from charlm import kernels, recurrent
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import Corpus
    from charlm.model import build_model
    from charlm.train import fit

    paths = args.paths or (["keras", "plain", "fused"] if args.cell == "gru"
                           else ["keras", "fused"])
    if "fused" in paths and kernels.ops() is None:
        raise SystemExit("the fused kernels cannot be built here (see the warning above)")
    split = split_headlines(load_headlines(args.csv)[:args.rows])
    train, valid = Corpus.from_texts(split["train"]), Corpus.from_texts(split["validation"])
    print(f"{args.cell} {args.hidden}x{args.depth} batch {args.batch} {args.precision}, "
          f"{train.characters:,} train characters; load {os.getloadavg()[0]:.2f}")
    choosers = {"keras": (lambda *_: False, kernels.ops),
                "plain": (recurrent._fast_path_ok, lambda: None),
                "fused": (recurrent._fast_path_ok, kernels.ops)}
    for rep in range(args.reps):
        for name in paths:
            chooser, ops = choosers[name]
            with mock.patch.object(recurrent, "_fast_path_ok", chooser), \
                    mock.patch.object(kernels, "ops", ops):
                model = build_model(ModelConfig(
                    cell=args.cell, hidden=args.hidden, depth=args.depth,
                    embedding=args.embedding, dropout=args.dropout), args.precision)
                result = fit(model, train, valid, TrainConfig(
                    batch_size=args.batch, epochs=args.epochs, max_minutes=600,
                    patience=args.epochs))
            cells = " ".join(f"{h['train_seconds']:.1f}s {h['train_bpc']:.4f}/"
                             f"{h['validation_bpc']:.4f}" for h in result.history)
            steady = sum(h["train_seconds"] for h in result.history[1:])
            print(f"  {name:<6} rep {rep + 1}: {cells}  | epochs 2..: {steady:.1f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
