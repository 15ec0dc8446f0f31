"""Where a whole training step's time goes: a per-op profile of `charlm.train.fit`'s epochs.

Builds the model (embedding 64, no dropout), fits one epoch to trace and warm up, then
profiles one more epoch with TensorFlow's profiler and sums every op's time by op type (and,
with --ops, by op name for the matmuls and the fused recurrent ops), per training step.
Times are thread times: TensorFlow runs independent ops side by side on its inter-op
threads, so they add up to more than the step's wall time (printed too).

    .venv/bin/python -m benchmarks.profile_step                      # lstm 128x2, bf16
    .venv/bin/python -m benchmarks.profile_step --cell gru --hidden 384 --ops
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_CSV, add_shape_options, load_headlines  # noqa: E402


def op_times(logdir: str) -> tuple[collections.Counter, collections.Counter,
                                   collections.Counter]:
    """(milliseconds by op type, calls by op type, milliseconds by op name) of the ops that
    ran inside the compiled training loop, from the profiler's XSpace file."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    files = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    assert len(files) == 1, files
    space.ParseFromString(Path(files[0]).read_bytes())
    by_type, calls, by_name = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id].name  # "scope/op_name:OpType"
                if ":" not in name or "while/body" not in name:
                    continue  # executor bookkeeping, or an op outside the training loop
                kind = name.rsplit(":", 1)[1]
                by_type[kind] += event.duration_ps / 1e9
                calls[kind] += 1
                by_name[name.split("/while/")[-1]] += event.duration_ps / 1e9
    return by_type, calls, by_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    add_shape_options(parser, hidden=128)
    parser.add_argument("--rows", type=int, default=12_000, help="first CSV rows (90%% train)")
    parser.add_argument("--top", type=int, default=20, help="op types shown")
    parser.add_argument("--ops", action="store_true", help="also the matmuls and fused ops "
                        "by name")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = parser.parse_args(argv)
    if not args.csv.exists():
        raise SystemExit(f"{args.csv} not found (pass --csv)")
    import tensorflow as tf

    from charlm import train
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import Corpus
    from charlm.model import build_model

    texts = load_headlines(args.csv)[:args.rows]
    cut = int(len(texts) * 0.9)
    corpus, validation = Corpus.from_texts(texts[:cut]), Corpus.from_texts(texts[cut:])
    model = build_model(ModelConfig(cell=args.cell, hidden=args.hidden, depth=args.depth,
                                    embedding=64, dropout=0.0), args.precision)
    config = TrainConfig(batch_size=args.batch, epochs=1, max_minutes=600.0)
    train.fit(model, corpus, validation, config)  # traces, warms the allocator
    with tempfile.TemporaryDirectory(prefix="profile-step-") as logdir:
        start = time.perf_counter()
        tf.profiler.experimental.start(logdir)
        result = train.fit(model, corpus, validation, config)
        tf.profiler.experimental.stop()
        wall = time.perf_counter() - start
        by_type, calls, by_name = op_times(logdir)
    steps = result.steps
    seconds = result.history[-1]["train_seconds"]
    print(f"{args.cell} {args.hidden}x{args.depth}, batch {args.batch}, {args.precision}: "
          f"{steps} steps, {1e3 * seconds / steps:.1f} ms a step (wall, profiled; the "
          f"epoch with validation and tracing took {wall:.1f} s)")
    total = sum(by_type.values())
    print(f"op thread time {total / steps:.1f} ms a step, {sum(calls.values()) / steps:.0f} "
          "ops a step\n")
    print("| op type | ms a step | share | calls a step |")
    print("|---|---|---|---|")
    for kind, ms in by_type.most_common(args.top):
        print(f"| {kind} | {ms / steps:.2f} | {100 * ms / total:.0f}% | "
              f"{calls[kind] / steps:.0f} |")
    if args.ops:
        print("\n| op | ms a step |\n|---|---|")
        for name, ms in by_name.most_common():
            if name.endswith(("MatMul", "Sequence", "SequenceGrad", "Xent", "XentGrad")):
                print(f"| {name} | {ms / steps:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
