"""GPU check for a lent device machine: the article's model over 1.2M headlines, timed.

One script for one device session (about 4 minutes on an H200, well inside 8):

1. asserts a GPU is visible, builds lstm 512x3 (one-hot input, the article's configuration)
   in the precision `charlm train` picks there (mixed_float16, loss scaling) and checks that
   every recurrent layer is built with use_cudnn=True (a fallback to the generic loop would
   then raise, so a finished run proves cuDNN ran);
2. trains 2 epochs over ~1.2M headlines with the real `charlm.train.fit` (batch 1024),
   printing each epoch's seconds (target: <= 45 s per epoch on one H200) and the
   steady-state chars/s measured between read-backs after the first one (tracing
   excluded), with the fraction of the device's float16 matmul peak measured in the same
   process;
3. times scoring the validation headlines and sampling 16,384 headlines on the device.

The shared ABC files do not travel to the device machine, so the corpus is the embedded
demo grammar's (or a CSV given with --csv). `--cpu-smoke` runs a tiny version on a CPU, so
the script is tested where no GPU is lent.

    python benchmarks/gpu_epoch.py                 # on the device machine
    python benchmarks/gpu_epoch.py --cpu-smoke     # anywhere: a few seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EPOCH_TARGET_S = 45.0


def matmul_peak(dtype: str, n: int = 8192, seconds: float = 3.0) -> float:
    """FLOP/s of back-to-back n x n matmuls in `dtype`, timed after a warm-up."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=dtype)
    b = tf.random.normal((n, n), dtype=dtype)
    f = tf.function(lambda a, b: tf.matmul(a, b))
    f(a, b).numpy()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        out = f(a, b)
        runs += 1
    out.numpy()  # wait for the queue
    return 2 * n**3 * runs / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headlines", type=int, default=1_200_000)
    parser.add_argument("--csv", help="headline CSV (publish_date,headline_text) instead")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny run on a CPU: checks the script, not the targets")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from benchmarks.harness import train_flops_per_char
    from charlm.config import ModelConfig, SampleConfig, TrainConfig
    from charlm.data import Corpus
    from charlm.evaluate import headline_nats
    from charlm.model import build_model, recurrent_layers, resolve_precision
    from charlm.sample import generate
    from charlm.train import Callback, fit

    gpus = tf.config.list_physical_devices("GPU")
    print("devices:", [d.name for d in tf.config.list_physical_devices()], flush=True)
    hidden, depth, samples = 512, 3, 16_384
    if args.cpu_smoke:
        args.headlines, args.batch_size, hidden, depth, samples = 3000, 64, 32, 2, 64
    elif not gpus:
        print("no GPU visible: this check needs the device machine (or --cpu-smoke)")
        return 2

    start = time.perf_counter()
    if args.csv:
        import polars as pl

        texts = pl.read_csv(args.csv)["headline_text"].drop_nulls().to_list()
    else:
        from charlm.demo_corpus import make_corpus

        texts = [t for _, t in make_corpus(args.headlines, np.random.default_rng(0))]
    train, validation = Corpus.from_texts(texts), Corpus.from_texts(texts[:20_000])
    print(f"corpus: {len(train):,} headlines, {train.characters:,} characters "
          f"({time.perf_counter() - start:.0f} s to make)", flush=True)

    precision = resolve_precision("auto")
    config = ModelConfig(cell="lstm", hidden=hidden, depth=depth, embedding=0, dropout=0.0)
    model = build_model(config, precision=precision)
    cudnn = [layer.use_cudnn for layer in recurrent_layers(model)]
    print(f"precision {precision}; use_cudnn per layer: {cudnn}", flush=True)
    if gpus:
        assert all(flag is True for flag in cudnn), "a recurrent layer is not on cuDNN"

    class Steady(Callback):
        """Chars/s over report intervals inside an epoch, the first one (tracing) left out."""

        def __init__(self) -> None:
            self.last: tuple[float, int] | None = None  # (time, epoch) of the last report
            self.chars, self.seconds = 0, 0.0

        def on_batch_end(self, step: int, logs: dict) -> None:
            now = time.perf_counter()
            if self.last is not None and self.last[1] == logs["epoch"]:
                self.chars += logs["characters"]
                self.seconds += now - self.last[0]
            self.last = (now, logs["epoch"])

        def on_epoch_end(self, epoch: int, logs: dict) -> None:
            self.last = None  # the next interval would hold the validation pass

    steady = Steady()
    train_config = TrainConfig(batch_size=args.batch_size, epochs=args.epochs,
                               max_minutes=30.0, patience=args.epochs, report_every=20)
    result = fit(model, train, validation, train_config, callbacks=[steady])
    flops = train_flops_per_char("lstm", 118, hidden, depth)
    peak = matmul_peak("float16" if "float16" in precision else "float32",
                       n=1024 if args.cpu_smoke else 8192,
                       seconds=0.2 if args.cpu_smoke else 3.0)
    for entry in result.history:
        rate = train.characters / entry["train_seconds"]
        verdict = "PASS" if entry["train_seconds"] <= EPOCH_TARGET_S else "MISS"
        print(f"epoch {entry['epoch']}: {entry['train_seconds']:.1f} s training "
              f"(target <= {EPOCH_TARGET_S:g} s: {verdict}) + {entry['validation_seconds']:.1f} s "
              f"validation; {rate:,.0f} chars/s = {rate * flops / 1e12:.2f} TFLOP/s = "
              f"{rate * flops / peak:.0%} of the measured matmul peak {peak / 1e12:.1f} TFLOP/s; "
              f"validation {entry['validation_bpc']:.3f} bits/char", flush=True)
    if steady.seconds:
        rate = steady.chars / steady.seconds
        print(f"steady state (tracing and validation left out): {rate:,.0f} chars/s = "
              f"{rate * flops / peak:.0%} of the matmul peak", flush=True)

    t0 = time.perf_counter()
    nats = headline_nats(model, validation)
    scored = time.perf_counter() - t0
    print(f"scoring: {len(validation):,} headlines in {scored:.2f} s "
          f"({validation.characters / scored:,.0f} chars/s), mean {nats.mean():.1f} nats",
          flush=True)
    generate(model, 64, SampleConfig(seed=1))  # traces the sampler
    t0 = time.perf_counter()
    out = generate(model, samples, SampleConfig(seed=2))
    sampled = time.perf_counter() - t0
    print(f"sampling: {samples:,} headlines in {sampled:.2f} s "
          f"({samples / sampled:,.0f} headlines/s); e.g. {out.texts[0][:60]!r}", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
