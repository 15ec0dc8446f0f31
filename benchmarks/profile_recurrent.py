"""Where one recurrent layer's training time goes on this CPU: the whole layer (forward and
backward) against the matmuls it cannot avoid.

Per shape and precision, interleaved, best of `--reps` (ms): Keras' own loop
(keras.layers.LSTM/GRU, use_cudnn=False: what charlm ran before issue 19), charlm.recurrent's
plain-ops GRU path (`gru`, where the kernels cannot be built), the fused layer (charlm's LSTM /
GRU with the fused sequence ops, charlm.kernels), the sequential recurrent matmuls alone
(T steps of h @ U forward and T of dz @ U^T backward, in a tf.while_loop, nothing else) and
the matmuls over all time steps (input projection, input gradient, kernel and
recurrent-kernel gradients). What the layer spends beyond those two is gate math, casts,
copies and the loop's per-op cost.

    .venv/bin/python -m benchmarks.profile_recurrent
    .venv/bin/python -m benchmarks.profile_recurrent --shapes gru384 --precisions bfloat16
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS, INPUT = 45, 64  # a typical headline batch's time steps; the embedding width
SHAPES = {"lstm128": ("lstm", 128, 128), "gru384": ("gru", 384, 128),
          "lstm512": ("lstm", 512, 1024)}


def profile(cell: str, hidden: int, batch: int, precision: str, reps: int) -> dict[str, float]:
    import keras
    import numpy as np
    import tensorflow as tf

    from charlm import kernels, recurrent

    dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
    gates = 4 if cell == "lstm" else 3
    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(size=(batch, STEPS, INPUT)).astype("float32"), dtype)
    policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    layer = (keras.layers.LSTM if cell == "lstm" else keras.layers.GRU)(
        hidden, return_sequences=True, use_cudnn=False, dtype=policy)
    layer(x)
    weights = layer.trainable_variables

    @tf.function
    def keras_loop():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x), tf.float32))
        return tape.gradient(loss, [x, *weights])[1][0, 0]

    @tf.function
    def charlm_gru():
        cell_ = layer.cell
        with tf.GradientTape() as tape:
            tape.watch(x)
            out, _ = recurrent.gru(x, tf.zeros((batch, hidden), dtype),
                                   tf.cast(cell_.kernel, dtype),
                                   tf.cast(cell_.recurrent_kernel, dtype), cell_.bias)
            loss = tf.reduce_sum(tf.cast(out, tf.float32))
        return tape.gradient(loss, [x, *weights])[1][0, 0]

    fused_layer = (recurrent.LSTM if cell == "lstm" else recurrent.GRU)(
        hidden, return_sequences=True, dtype=policy)
    fused_layer.use_cudnn = False
    fused_layer(x)
    fused_layer.set_weights(layer.get_weights())

    @tf.function
    def fused():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(fused_layer(x), tf.float32))
        return tape.gradient(loss, [x, *fused_layer.trainable_variables])[1][0, 0]

    u = tf.cast(layer.cell.recurrent_kernel, dtype)
    k = tf.cast(layer.cell.kernel, dtype)

    @tf.function
    def recurrent_matmuls():
        h, total = tf.zeros((batch, hidden), dtype), tf.zeros((), dtype)
        for _ in tf.range(STEPS):
            total += tf.matmul(h, u)[0, 0]
        d = tf.zeros((batch, gates * hidden), dtype)
        for _ in tf.range(STEPS):
            total += tf.matmul(d, u, transpose_b=True)[0, 0]
        return total

    @tf.function
    def sequence_matmuls():
        flat = tf.reshape(x, [-1, INPUT])  # (T B, I)
        z = tf.matmul(flat, k)  # (T B, G H)
        states = tf.zeros((STEPS * batch, hidden), dtype)
        return (tf.matmul(z, k, transpose_b=True)[0, 0]
                + tf.matmul(flat, z, transpose_a=True)[0, 0]
                + tf.matmul(states, z, transpose_a=True)[0, 0])

    runs = {"keras loop": keras_loop, "recurrent matmuls": recurrent_matmuls,
            "sequence matmuls": sequence_matmuls}
    if cell == "gru":
        runs["plain ops"] = charlm_gru
    if kernels.ops() is not None:
        runs["fused"] = fused
    best = {name: float("inf") for name in runs}
    for fn in runs.values():
        fn().numpy()  # trace and warm up
    for _ in range(reps):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn().numpy()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    parser.add_argument("--precisions", nargs="+", choices=("float32", "bfloat16"),
                        default=["float32", "bfloat16"])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"one layer, input {INPUT}, T {STEPS}, forward + backward; best of {args.reps} "
          f"(ms); load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| shape | precision | keras loop | plain ops (gru) | fused | recurrent matmuls | "
          "sequence matmuls | rest (keras loop) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.shapes:
        cell, hidden, batch = SHAPES[name]
        for precision in args.precisions:
            t = profile(cell, hidden, batch, precision, args.reps)
            rest = t["keras loop"] - t["recurrent matmuls"] - t["sequence matmuls"]
            cells = " | ".join("-" if t.get(k) is None else f"{1e3 * t[k]:.1f}"
                               for k in ("plain ops", "fused"))
            print(f"| {cell} {hidden}, batch {batch} | {precision} | "
                  f"{1e3 * t['keras loop']:.1f} | {cells}"
                  f" | {1e3 * t['recurrent matmuls']:.1f} | {1e3 * t['sequence matmuls']:.1f} | "
                  f"{1e3 * rest:.1f} ({100 * rest / t['keras loop']:.0f}%) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
