"""What -ffast-math buys the fused CPU kernels: the same training steps with four builds.

Each build runs charlm.train's compiled training call (the step `fit` runs: the batch cut
from the corpus, embedding, the fused recurrent ops, the logits, the fused loss, clipping,
AdamW) `--calls` times `--steps-per-call` steps after two traced warm-up calls, timing
every call, in a process of its own (two builds' ops cannot be loaded into one process),
the builds interleaved over `--reps` rounds:

* `before`: the build before NaN was honoured: -ffast-math, exp's clamp by std::fmin/fmax
  (a NaN became e^-87), the loss's maximum by std::fmax,
* `fast-math`: this source with -ffast-math,
* `ieee`: this source with no fast-math flag at all,
* `ships`: what ships, this source with charlm.kernels.FLAGS (-ffast-math's optimisations
  but -ffinite-math-only, without the flag itself).

Printed per round and build: the fastest call's and the median call's milliseconds per step
and the CPU milliseconds per step (every thread's, median); then per build the best of the
rounds' fastest calls, the median of their medians and of their CPU times, each as a ratio
to `ships`. On a machine other work shares, wall-clock times measure the other work too:
compare the fastest calls and the CPU times (`--threads 1` makes the CPU time the build's
code alone, without thread pools waiting).

    .venv/bin/python -m benchmarks.bench_fast_math                        # lstm and gru 128x2
    .venv/bin/python -m benchmarks.bench_fast_math --cells gru --hidden 384 --reps 5
    .venv/bin/python -m benchmarks.bench_fast_math --ops --threads 1 --calls 200  # ops alone

`--ops` times the fused ops alone instead (the recurrence forward and backward and the loss
forward and backward, on fixed tensors of a step's shapes, the fastest of `--calls` each):
what the flags change without the rest of the step, which is TensorFlow's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_shape_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUILDS = ("before", "fast-math", "ieee", "ships")
BASE = "ships"  # what the others are compared with
# What `before` changes back in charlm/native/gates.cc: exp's clamp and 2^n, the loss's max.
BEFORE = {
    "v = v < -87.0f ? -87.0f : (v > 88.0f ? 88.0f : v);":
        "v = std::fmin(std::fmax(v, -87.0f), 88.0f);",
    """  float shifted = n + 12582912.0f;
  uint32_t bits;
  std::memcpy(&bits, &shifted, 4);
  bits = (bits - 0x4B400000u + 127u) << 23;""":
        "  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;",
    "const float top = row_max(row, V);":
        "float top = row[0];\n"
        "        for (int64_t v = 1; v < V; ++v) top = std::fmax(top, row[v]);",
}


def variant(name: str, folder: Path) -> tuple[Path, list[str]]:
    """(source file, compiler flags) of build `name`, the source written into `folder`."""
    from charlm import kernels

    source = kernels.SOURCE.read_text()
    bare = [f for f in kernels.FLAGS if f not in kernels.SAFE_FAST_MATH]
    flags = {"before": bare[:2] + ["-ffast-math"] + bare[2:],
             "fast-math": bare[:2] + ["-ffast-math"] + bare[2:],
             "ieee": bare, "ships": list(kernels.FLAGS)}[name]
    if name == "before":
        for now, then in BEFORE.items():
            assert now in source, "charlm/native/gates.cc changed: update this benchmark"
            source = source.replace(now, then)
    path = folder / f"gates-{name}.cc"
    path.write_text(source)
    return path, flags


def child(args: argparse.Namespace) -> None:
    """One build, one cell: time args.calls compiled calls; print JSON (seconds per step)."""
    import time

    import numpy as np
    import tensorflow as tf

    from charlm import kernels
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import Corpus, batch_dataset, batch_rows
    from charlm.demo_corpus import make_corpus
    from charlm.model import build_model
    from charlm.optim import make_optimizer
    from charlm.train import _Trainer

    if args.threads:  # one thread: the build's code alone, least disturbed by other work
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    folder = Path(args.folder)
    kernels.SOURCE, kernels.FLAGS = variant(args.child, folder)
    os.environ["CHARLM_KERNEL_DIR"] = str(folder / args.child)
    state = kernels.status(args.precision, args.cell)
    assert state.path == kernels.KERNELS, state.describe()
    steps = args.steps_per_call * (args.calls + 2)  # two traced warm-up calls
    texts = [t for _, t in make_corpus(args.batch * steps, np.random.default_rng(1))]
    train = Corpus.from_texts(texts)
    model = build_model(ModelConfig(cell=args.cell, hidden=args.hidden, depth=args.depth,
                                    embedding=64, dropout=0.15), args.precision)
    config = TrainConfig(batch_size=args.batch, epochs=1, max_minutes=600)
    optimizer = make_optimizer(model, config)
    trainer = _Trainer(model, optimizer, tf.distribute.get_strategy(), train, config, steps)
    trainer.clock.assign(time.time())
    iterator = iter(batch_dataset(batch_rows(train, args.batch, np.random.default_rng(0))))
    per_call = tf.constant(args.steps_per_call, tf.int64)
    times, cpu = [], []
    for call in range(args.calls + 2):
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer.run(iterator, per_call)
        nats, chars, _ = trainer.counters()  # waits for the call's last step
        if call >= 2:
            times.append((time.perf_counter() - start) / args.steps_per_call)
            cpu.append((time.process_time() - start_cpu) / args.steps_per_call)
    # CPU seconds (every thread's) per step: what the build costs, nearly whatever else runs
    print(json.dumps({"fastest": min(times), "median": statistics.median(times),
                      "cpu": statistics.median(cpu), "bpc": nats / chars / np.log(2)}))


def ops_child(args: argparse.Namespace) -> None:
    """One build: the fused ops alone (the recurrence forward and backward of args.cell, the
    loss forward and backward) on fixed tensors of a training step's shapes, each timed
    args.calls times; print JSON (the fastest of each, seconds). What the flags change, and
    nothing else: a step's other ops are TensorFlow's."""
    import time

    import numpy as np
    import tensorflow as tf

    from charlm import kernels
    from charlm.model import resolve_precision

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    folder = Path(args.folder)
    kernels.SOURCE, kernels.FLAGS = variant(args.child, folder)
    os.environ["CHARLM_KERNEL_DIR"] = str(folder / args.child)
    native = kernels.ops()
    assert native is not None
    dtype = tf.bfloat16 if resolve_precision(args.precision) == "mixed_bfloat16" else tf.float32
    rng = np.random.default_rng(0)
    b, t, h = args.batch, 40, args.hidden  # 40: about a headline's characters

    def tensor(*shape: int, kind: tf.DType = tf.float32, scale: float = 0.5) -> tf.Tensor:
        return tf.cast(tf.constant(rng.normal(size=shape) * scale, tf.float32), kind)

    none = tf.zeros([0], tf.int64)
    if args.cell == "lstm":
        xz, bias = tensor(b, t, 4 * h, kind=dtype), tensor(4 * h)
        u, h0, c0 = tensor(h, 4 * h, kind=dtype), tensor(b, h, kind=dtype), tensor(b, h)
        hs, gates, cs = native.charlm_lstm_sequence(xz, bias, u, h0, c0, none, vocab=0)
        d_out, dh, dc = tensor(b, t, h, kind=dtype), tensor(b, h), tensor(b, h)

        def forward():
            return native.charlm_lstm_sequence(xz, bias, u, h0, c0, none, vocab=0)[0]

        def backward():
            return native.charlm_lstm_sequence_grad(gates, cs, c0, d_out, dh, dc, u, none,
                                                    vocab=0)[0]
    else:
        xz, bias = tensor(b, t, 3 * h, kind=dtype), tensor(2, 3 * h)
        u, h0 = tensor(h, 3 * h, kind=dtype), tensor(b, h)
        hs, saved, _ = native.charlm_gru_sequence(xz, bias, u, h0, none, vocab=0)
        d_out, dh = tensor(b, t, h, kind=dtype), tensor(b, h)

        def forward():
            return native.charlm_gru_sequence(xz, bias, u, h0, none, vocab=0)[0]

        def backward():
            return native.charlm_gru_sequence_grad(saved, d_out, dh, u, none, vocab=0)[0]
    logits = tensor(b * t, 118, scale=3.0)
    labels = tf.constant(rng.integers(0, 118, size=b * t), tf.int64)
    _, lse = native.charlm_sparse_xent(logits, labels)
    d_nll = tensor(b * t)
    timed = {"forward": forward, "backward": backward,
             "loss": lambda: native.charlm_sparse_xent(logits, labels)[0],
             "loss_grad": lambda: native.charlm_sparse_xent_grad(logits, labels, lse, d_nll)}
    best = {}
    for name, run in timed.items():
        run().numpy()  # warm
        times = []
        for _ in range(args.calls):
            start = time.perf_counter()
            run().numpy()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    print(json.dumps(best))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", choices=("lstm", "gru"), default=["lstm", "gru"])
    add_shape_options(parser, hidden=128, precision="auto")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per process")
    parser.add_argument("--steps-per-call", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow's intra- and inter-op threads (0: its default)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--builds", nargs="+", choices=BUILDS, default=list(BUILDS))
    parser.add_argument("--ops", action="store_true",
                        help="time the fused ops alone (fastest of --calls each), not steps")
    parser.add_argument("--child", choices=BUILDS, help=argparse.SUPPRESS)
    parser.add_argument("--cell", default="lstm", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        (ops_child if args.ops else child)(args)
        return 0

    import platform

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; {args.hidden}x{args.depth}, batch {args.batch}, "
          f"{args.precision}, {args.calls} timed calls "
          + ("of each op" if args.ops else f"of {args.steps_per_call} steps")
          + f", {args.threads or 'default'} thread(s)")
    with tempfile.TemporaryDirectory(prefix="bench-fast-math-") as folder:
        for cell in args.cells:
            fastest: dict[str, list[float]] = {name: [] for name in args.builds}
            medians: dict[str, list[float]] = {name: [] for name in args.builds}
            cpu: dict[str, list[float]] = {name: [] for name in args.builds}
            ops_seen: dict[str, list[dict[str, float]]] = {name: [] for name in args.builds}
            for rep in range(args.reps):
                for name in args.builds:
                    command = [sys.executable, "-m", "benchmarks.bench_fast_math",
                               "--child", name, "--cell", cell, "--folder", folder,
                               *(f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
                                 ("hidden", "depth", "batch", "precision", "calls",
                                  "steps_per_call", "threads")),
                               *(["--ops"] if args.ops else [])]
                    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
                    if done.returncode != 0:
                        print(done.stderr, file=sys.stderr)
                        return 1
                    figures = json.loads(done.stdout.strip().splitlines()[-1])
                    if args.ops:
                        ops_seen[name].append(figures)
                        print(f"  {cell} round {rep + 1} {name:<10} " + ", ".join(
                            f"{op} {1000 * sec:.3f}" for op, sec in figures.items()) + " ms",
                            flush=True)
                        continue
                    fastest[name].append(figures["fastest"])
                    medians[name].append(figures["median"])
                    cpu[name].append(figures["cpu"])
                    print(f"  {cell} round {rep + 1} {name:<10} fastest "
                          f"{1000 * figures['fastest']:.2f}, median "
                          f"{1000 * figures['median']:.2f} ms/step, CPU "
                          f"{1000 * figures['cpu']:.2f} ms/step "
                          f"(train {figures['bpc']:.4f} bits/char)", flush=True)
            base = BASE if BASE in fastest else args.builds[0]
            if args.ops:
                low = {name: {op: min(seen[op] for seen in ops_seen[name])
                              for op in ops_seen[name][0]} for name in args.builds}
                for name in args.builds:
                    total, reference = sum(low[name].values()), sum(low[base].values())
                    print(f"{cell} {name:<10} " + ", ".join(
                        f"{op} {1000 * sec:.3f} ({sec / low[base][op]:.3f}x)"
                        for op, sec in low[name].items())
                        + f"; all {1000 * total:.3f} ms ({total / reference:.3f}x {base})")
                continue
            best, typical = min(fastest[base]), statistics.median(medians[base])
            work = statistics.median(cpu[base])
            for name in args.builds:
                low, mid = min(fastest[name]), statistics.median(medians[name])
                used = statistics.median(cpu[name])
                print(f"{cell} {name:<10} fastest {1000 * low:.2f} ms/step "
                      f"({low / best:.3f}x {base}), median {1000 * mid:.2f} "
                      f"({mid / typical:.3f}x), CPU {1000 * used:.2f} ({used / work:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
