"""GPU check: one epoch over ~1.2M headlines at the article's config, with achieved FLOP/s.

Meant for a lent GPU machine (the shared ABC files do not travel there, so the corpus is
the embedded grammar's, or a CSV given with --csv): lstm 512x3, batch 1024, mixed
precision, cuDNN. Prints the epoch time (target <= 60 s on one H200), characters/s and
FLOP/s against the device's measured matmul peak in the same precision.

    python benchmarks/gpu_epoch.py [--headlines 1200000] [--csv FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def lstm_flops_per_char(embedding: int, hidden: int, depth: int, vocab: int = 118) -> float:
    """Training FLOPs per predicted character: 3x the forward matmuls (forward + backward)."""
    forward = 0.0
    for level in range(depth):
        inputs = embedding if level == 0 else hidden
        forward += 2 * (inputs + hidden) * 4 * hidden
    forward += 2 * hidden * vocab
    return 3 * forward


def matmul_peak(dtype: str, n: int = 4096, seconds: float = 3.0) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=dtype)
    b = tf.random.normal((n, n), dtype=dtype)
    f = tf.function(lambda a, b: tf.matmul(a, b))
    f(a, b).numpy()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        f(a, b)
        runs += 1
    f(a, b).numpy()  # wait for the queue
    return 2 * n**3 * (runs + 1) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headlines", type=int, default=1_200_000)
    parser.add_argument("--csv", help="headline CSV (publish_date,headline_text) instead")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import Corpus
    from charlm.model import build_model, resolve_precision
    from charlm.train import fit

    print("devices:", [d.name for d in tf.config.list_physical_devices()], flush=True)
    if args.csv:
        import polars as pl

        texts = pl.read_csv(args.csv)["headline_text"].drop_nulls().to_list()
    else:
        from charlm.demo_corpus import make_corpus

        texts = [t for _, t in make_corpus(args.headlines, np.random.default_rng(0))]
    train, validation = Corpus.from_texts(texts), Corpus.from_texts(texts[:2000])
    config = ModelConfig(cell="lstm", hidden=512, depth=3, embedding=64, dropout=0.0)
    precision = resolve_precision(args.precision)
    model = build_model(config, precision=precision)
    print(f"{len(train)} headlines, {train.characters} characters; precision {precision}",
          flush=True)
    # Warm-up: trace the step for the common shapes before timing.
    fit(model, train.take(np.arange(20 * args.batch_size)), validation,
        TrainConfig(batch_size=args.batch_size, epochs=1, max_minutes=5))
    result = fit(model, train, validation,
                 TrainConfig(batch_size=args.batch_size, epochs=1, max_minutes=30))
    seconds = result.history[0]["seconds"]
    chars_per_s = result.characters / seconds
    flops = chars_per_s * lstm_flops_per_char(64, 512, 3)
    peak = matmul_peak("float16" if "float16" in precision else "float32")
    print(f"epoch: {seconds:.1f} s (target <= 60 s), {chars_per_s:,.0f} chars/s, "
          f"{flops / 1e12:.1f} TFLOP/s = {flops / peak:.0%} of the measured matmul peak "
          f"{peak / 1e12:.0f} TFLOP/s; validation {result.history[0]['validation_bpc']:.3f}")


if __name__ == "__main__":
    main()
