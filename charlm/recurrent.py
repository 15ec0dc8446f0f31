"""charlm's CPU recurrent paths: the whole sequence at once, with a hand-written gradient.

Keras' generic loop (what runs without cuDNN) multiplies the inputs by the kernel at every
time step and runs a dozen small TensorFlow ops per step (each a kernel launch; the stock
build's elementwise kernels lack AVX2/AVX-512), and its autodiff adds, per step, the two
weight-gradient products and their accumulation. Here, as in oneDNN's RNN primitive:

* forward: the input projection of all time steps is one big matmul; the recurrence
  (h @ recurrent_kernel and the gate math, every step) is one op, `fused_lstm` /
  `fused_gru`, from the fused CPU kernels (charlm/native/gates.cc, built by charlm.kernels);
* backward (tf.custom_gradient): one op runs the recurrence backwards (gate derivatives and
  dz @ recurrent_kernel^T, the bias gradient summed on the way); the kernel, recurrent-kernel
  and input gradients are big matmuls over all time steps after it;
* a first layer fed straight by an Embedding (x = table[ids], found in the traced graph by
  `embedding_lookup`) projects the table, not every character: xz = (table @ kernel)[ids];
  its backward op sums d(xz) by id into S (V, G), and the kernel's and the table's gradients
  are table^T S and S kernel^T, (V, I) matmuls instead of (B T, I) ones (at 128 units, batch
  128: three of the step's eleven big matmuls, and the embedding's scatter).

Where the kernels cannot be built (no C++ compiler) or are turned off (CHARLM_KERNELS=0),
the GRU runs `gru`, the same scheme in plain TensorFlow ops (a while-loop), and the LSTM
Keras' own loop (the plain-ops scheme measured 0.8x Keras' loop for the LSTM).

Matmul operands are in the inputs' dtype (bfloat16 under mixed_bfloat16); the state, the
gates and every sum stay float32 in between. The weights are Keras' own (LSTM: kernel,
recurrent_kernel, bias (4H,), gates i f c o; GRU: bias (2, 3H), gates z r h,
reset_after=True), so a model trains, saves and loads as with keras.layers.LSTM / GRU.

Weight drop (`weight_drop`, AWD-LSTM's DropConnect on the recurrent kernel): while training,
each step's forward pass uses recurrent_kernel with a fraction of its entries zeroed (one
mask for every time step and row of the batch, the rest scaled by 1 / (1 - rate)), on
every path alike: the fused ops, `gru`, Keras' loop and cuDNN.

Shapes: x (B, T, I) in the compute dtype; h0, c0 (B, H); outputs (B, T, H) in the compute
dtype and the final states.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from charlm import kernels

F32 = tf.float32
FUSED_DTYPES = (tf.float32, tf.bfloat16)  # the kernels' matmul dtypes (float16: Keras' loops)


def _rows(x: tf.Tensor) -> tf.Tensor:
    """(B, T, G) -> (B T, G): every time step's rows in one matrix, no copy."""
    return tf.reshape(x, [-1, tf.shape(x)[2]])


def _time_major(x: tf.Tensor) -> tf.Tensor:
    """(B, T, I) -> (T B, I): the rows in step order (the plain-ops loop reads steps)."""
    return tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, tf.shape(x)[2]])


def embedding_lookup(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor] | None:
    """(ids (B, T) int64, table (V, I)) when x is table[ids] in a traced graph (what
    keras.layers.Embedding outputs: a GatherV2 of its matrix), else None (eager tensors, or
    any other input)."""
    op = getattr(x, "op", None)
    if tf.executing_eagerly() or op is None or op.type != "GatherV2":
        return None
    table, ids, axis = op.inputs
    if (tf.get_static_value(axis) != 0 or op.get_attr("batch_dims") != 0
            or table.shape.rank != 2 or table.shape[0] is None or ids.shape.rank != 2
            or table.dtype != x.dtype or ids.dtype not in (tf.int32, tf.int64)):
        return None
    return tf.cast(ids, tf.int64), table


def _project_steps(source: tf.Tensor, kernel: tf.Tensor, ids: tf.Tensor | None
                   ) -> tuple[tf.Tensor, tf.Tensor]:
    """The forward op's xz and ids inputs, in the compute dtype: every step's projection
    x @ kernel (B, T, G) from source x (B, T, I); or, with ids (B, T), the projected table
    (V, G) of the table (V, I) that x = table[ids] comes from (the op reads rows by id)."""
    if ids is not None:
        return tf.matmul(source, kernel), ids
    return tf.reshape(tf.matmul(_rows(source), kernel),
                      [tf.shape(source)[0], tf.shape(source)[1], -1]), _no_ids()


def _source_grads(source: tf.Tensor, ids: tf.Tensor | None, d_input: tf.Tensor,
                  d_table: tf.Tensor, kernel: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(gradient of source, of kernel (I, G)) of the input projection: source x (B, T, I)
    with d_input (B, T, G) the projection's gradient; or, with ids, the table (V, I) with
    d_table (V, G) float32, that gradient summed by id (xz = (table @ kernel)[ids])."""
    if ids is None:
        dx, d_kernel = _input_grads(_rows(source), _rows(d_input), kernel)
        return tf.reshape(dx, tf.shape(source)), d_kernel
    d_kernel = tf.matmul(tf.cast(source, F32), d_table, transpose_a=True)  # (I, G)
    d_source = tf.matmul(d_table, tf.cast(kernel, F32), transpose_b=True)  # (V, I)
    return tf.cast(d_source, source.dtype), tf.cast(d_kernel, kernel.dtype)


def _recurrent_grad(h0: tf.Tensor, hs: tf.Tensor, d_rec: tf.Tensor) -> tf.Tensor:
    """(H, G) = sum over steps of h_prev^T d_rec, where h_prev is h0 at step 0 and hs[:, t - 1]
    after: hs (B, T, H) outputs, d_rec (B, T, G), both in the compute dtype.

    Row i of hs (batch-major rows b T + t) precedes row i + 1 of d_rec except where a batch
    row starts: one matmul over the offset row ranges (views, no copy), then a (B, H) x (B, G)
    product swaps, at each t = 0 row, the previous batch row's last output for h0. Building
    the (B, T, H) "states entering each step" instead cost a slice and a concat per layer.
    """
    rows_h, rows_d = _rows(hs), _rows(d_rec)  # (B T, H), (B T, G)
    inner = tf.matmul(rows_h[:-1], rows_d[1:], transpose_a=True)  # (H, G)
    last = tf.cast(hs[:, -1], F32)  # (B, H)
    before = tf.concat([tf.zeros_like(last[:1]), last[:-1]], axis=0)  # paired with t = 0 rows
    fix = tf.matmul(tf.cast(h0, F32) - before, tf.cast(d_rec[:, 0], F32), transpose_a=True)
    return tf.cast(tf.cast(inner, F32) + fix, hs.dtype)


def _no_ids() -> tf.Tensor:
    return tf.zeros([0], tf.int64)


def _project(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """(B, T, I) @ (I, G) -> (T, B, G) float32: every time step in one matmul."""
    batch, steps = tf.shape(x)[0], tf.shape(x)[1]
    return tf.reshape(tf.cast(tf.matmul(_time_major(x), kernel), F32), [steps, batch, -1])


def _input_grads(x: tf.Tensor, d_input: tf.Tensor, kernel: tf.Tensor
                 ) -> tuple[tf.Tensor, tf.Tensor]:
    """(dx (N, I) in x's dtype, dkernel (I, G)) of the input projection x @ kernel, as big
    matmuls over rows (one per batch row and step, in one order shared by both): x (N, I),
    d_input (N, G) its gradient."""
    dtype = kernel.dtype
    d_in = tf.cast(d_input, dtype)
    d_kernel = tf.matmul(x, d_in, transpose_a=True)  # (I, G)
    dx = tf.matmul(d_in, kernel, transpose_b=True)  # (N, I)
    return tf.cast(dx, x.dtype), d_kernel


def _weight_grads(x: tf.Tensor, previous: tf.Tensor, d_input: tf.Tensor,
                  d_recurrent: tf.Tensor, kernel: tf.Tensor):
    """Gradients that need all time steps, as big matmuls: (dx, dkernel, drecurrent_kernel).

    Rows as in `_input_grads`; previous (N, H) the states entering each step, d_recurrent
    (N, G) the gradient of the recurrent projection.
    """
    dx, d_kernel = _input_grads(x, d_input, kernel)
    dtype = kernel.dtype
    d_recurrent_kernel = tf.matmul(tf.cast(previous, dtype), tf.cast(d_recurrent, dtype),
                                   transpose_a=True)  # (H, G)
    return dx, d_kernel, d_recurrent_kernel


def _column_sums(values: tf.Tensor) -> tf.Tensor:
    """(T, B, G) -> (G,): summed over time and batch (a reduction over axes [0, 1] of a 3-D
    tensor takes Eigen's slow generic path: measured ~10x a 2-D column sum)."""
    return tf.reduce_sum(tf.reshape(values, [-1, tf.shape(values)[2]]), axis=0)


def _stack_previous(first: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """(T, B, H) states entering each step: first, then outputs[:-1]."""
    return tf.concat([first[None], outputs[:-1]], axis=0)


def gru(x: tf.Tensor, h0: tf.Tensor, kernel: tf.Tensor, recurrent_kernel: tf.Tensor,
        bias: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Keras GRU with reset_after=True (tanh, sigmoid, gates z r h; bias (2, 3H): input,
    recurrent) over all of x: (outputs, h)."""

    @tf.custom_gradient
    def run(x, h0, kernel, recurrent_kernel, bias):
        dtype, units = x.dtype, tf.shape(recurrent_kernel)[0]
        b32 = tf.cast(bias, F32)
        xz = _project(x, kernel) + b32[0]  # (T, B, 3H)
        steps = tf.shape(xz)[0]
        inputs = tf.TensorArray(F32, size=steps).unstack(xz)

        def body(t, h, hs, saved):
            xt = inputs.read(t)
            rz = tf.cast(tf.matmul(tf.cast(h, dtype), recurrent_kernel), F32) + b32[1]
            z, r = tf.split(tf.sigmoid(xt[:, :2 * units] + rz[:, :2 * units]), 2, axis=1)
            rh = rz[:, 2 * units:]
            hh = tf.tanh(xt[:, 2 * units:] + r * rh)
            h = hh + z * (h - hh)  # z h + (1 - z) hh
            return t + 1, h, hs.write(t, h), saved.write(t, tf.concat([z, r, hh, rh], axis=1))

        _, h, hs, saved = tf.while_loop(
            lambda t, *_: t < steps, body,
            (0, tf.cast(h0, F32), tf.TensorArray(F32, size=steps),
             tf.TensorArray(F32, size=steps)))
        hs, saved = hs.stack(), saved.stack()  # (T, B, H), (T, B, 4H)
        outputs = tf.transpose(tf.cast(hs, dtype), [1, 0, 2])  # (B, T, H)

        def grad(d_outputs, dh_last):
            d_out = tf.transpose(tf.cast(d_outputs, F32), [1, 0, 2])  # (T, B, H)
            d_out_ta = tf.TensorArray(F32, size=steps).unstack(d_out)
            saved_ta = tf.TensorArray(F32, size=steps).unstack(saved)
            previous = _stack_previous(tf.cast(h0, F32), hs)  # (T, B, H)
            prev_ta = tf.TensorArray(F32, size=steps).unstack(previous)

            def back(t, dh, d_ins, d_recs):
                dh = dh + d_out_ta.read(t)
                z, r, hh, rh = tf.split(saved_ta.read(t), 4, axis=1)
                d_a = dh * (1.0 - z) * (1.0 - hh * hh)  # pre-activation of hh
                d_z = dh * (prev_ta.read(t) - hh) * z * (1.0 - z)
                d_r = d_a * rh * r * (1.0 - r)
                d_rec = tf.concat([d_z, d_r, d_a * r], axis=1)  # (B, 3H)
                dh = dh * z + tf.cast(
                    tf.matmul(tf.cast(d_rec, dtype), recurrent_kernel, transpose_b=True), F32)
                return (t - 1, dh, d_ins.write(t, tf.concat([d_z, d_r, d_a], axis=1)),
                        d_recs.write(t, d_rec))

            _, dh0, d_ins, d_recs = tf.while_loop(
                lambda t, *_: t >= 0, back,
                (steps - 1, tf.cast(dh_last, F32), tf.TensorArray(F32, size=steps),
                 tf.TensorArray(F32, size=steps)))
            d_in, d_rec = d_ins.stack(), d_recs.stack()  # (T, B, 3H) each
            dx, d_kernel, d_recurrent = _weight_grads(
                _time_major(x), _rows(previous), _rows(d_in), _rows(d_rec), kernel)
            dx = tf.transpose(tf.reshape(dx, [steps, -1, tf.shape(x)[2]]), [1, 0, 2])
            d_bias = tf.cast(tf.stack([_column_sums(d_in), _column_sums(d_rec)]), bias.dtype)
            return dx, tf.cast(dh0, h0.dtype), d_kernel, d_recurrent, d_bias

        return (outputs, tf.cast(h, dtype)), grad

    return run(*(tf.convert_to_tensor(v) for v in (x, h0, kernel, recurrent_kernel, bias)))


def fused_lstm(x: tf.Tensor, h0: tf.Tensor, c0: tf.Tensor, kernel: tf.Tensor,
               recurrent_kernel: tf.Tensor, bias: tf.Tensor,
               lookup: tuple[tf.Tensor, tf.Tensor] | None = None
               ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Keras LSTM (tanh, sigmoid, gates i f c o; bias (4H,)) over all of x, the recurrence in
    one fused op each way (charlm.kernels): (outputs (B, T, H), h, c). kernel and
    recurrent_kernel in x's dtype; the cell state float32 throughout, the gates saved for the
    gradient in x's dtype (bfloat16 halves them). lookup: `embedding_lookup(x)`, when x is
    table[ids]; the gradient then goes to the table, not to x."""
    native = kernels.ops()
    assert native is not None, "fused_lstm needs the kernels (charlm.kernels.ops())"
    ids, source = lookup if lookup is not None else (None, x)
    vocab = 0 if ids is None else int(source.shape[0])

    @tf.custom_gradient
    def run(source, h0, c0, kernel, recurrent_kernel, bias):
        dtype = source.dtype
        xz, step_ids = _project_steps(source, kernel, ids)  # (B, T, 4H) or (V, 4H)
        c_first = tf.cast(c0, F32)
        hs, gates, cs = native.charlm_lstm_sequence(
            xz, tf.cast(bias, F32), recurrent_kernel, tf.cast(h0, dtype), c_first, step_ids,
            vocab=vocab)  # (B, T, H), (B, T, 4H), (B, T, H) float32

        def grad(d_outputs, dh_last, dc_last):
            dz, dh0, dc0, d_bias, d_table = native.charlm_lstm_sequence_grad(
                gates, cs, c_first, tf.cast(d_outputs, dtype), tf.cast(dh_last, F32),
                tf.cast(dc_last, F32), recurrent_kernel, _no_ids() if ids is None else ids,
                vocab=vocab)  # dz (B, T, 4H); d_table (V, 4H)
            d_recurrent = _recurrent_grad(h0, hs, dz)
            d_source, d_kernel = _source_grads(source, ids, dz, d_table, kernel)
            return (d_source, tf.cast(dh0, h0.dtype), tf.cast(dc0, c0.dtype),
                    d_kernel, d_recurrent, tf.cast(tf.reduce_sum(d_bias, axis=0), bias.dtype))

        return (hs, hs[:, -1], tf.cast(cs[:, -1], dtype)), grad

    return run(*(tf.convert_to_tensor(v)
                 for v in (source, h0, c0, kernel, recurrent_kernel, bias)))


def fused_gru(x: tf.Tensor, h0: tf.Tensor, kernel: tf.Tensor, recurrent_kernel: tf.Tensor,
              bias: tf.Tensor, lookup: tuple[tf.Tensor, tf.Tensor] | None = None
              ) -> tuple[tf.Tensor, tf.Tensor]:
    """`gru` with the recurrence in one fused op each way (charlm.kernels); lookup as in
    `fused_lstm`."""
    native = kernels.ops()
    assert native is not None, "fused_gru needs the kernels (charlm.kernels.ops())"
    ids, source = lookup if lookup is not None else (None, x)
    vocab = 0 if ids is None else int(source.shape[0])

    @tf.custom_gradient
    def run(source, h0, kernel, recurrent_kernel, bias):
        dtype = source.dtype
        xz, step_ids = _project_steps(source, kernel, ids)  # (B, T, 3H) or (V, 3H)
        hs, saved, h = native.charlm_gru_sequence(
            xz, tf.cast(bias, F32), recurrent_kernel, tf.cast(h0, F32), step_ids,
            vocab=vocab)  # (B, T, H), (B, T, 5H)

        def grad(d_outputs, dh_last):
            d_in, d_rec, dh0, d_bias, d_table = native.charlm_gru_sequence_grad(
                saved, tf.cast(d_outputs, dtype), tf.cast(dh_last, F32), recurrent_kernel,
                _no_ids() if ids is None else ids, vocab=vocab)  # (B, T, 3H) x2; (V, 3H)
            d_recurrent = _recurrent_grad(h0, hs, d_rec)
            d_source, d_kernel = _source_grads(source, ids, d_in, d_table, kernel)
            return (d_source, tf.cast(dh0, h0.dtype), d_kernel, d_recurrent,
                    tf.cast(tf.reduce_sum(d_bias, axis=0), bias.dtype))  # (2, 3H)

        return (hs, tf.cast(h, dtype)), grad

    return run(*(tf.convert_to_tensor(v)
                 for v in (source, h0, kernel, recurrent_kernel, bias)))


class WeightDrop:
    """The weight-drop part of charlm's GRU and LSTM: the rate, its seed, the dropped kernel."""

    def __init__(self, *args: Any, weight_drop: float = 0.0, weight_drop_seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= weight_drop < 1.0:
            raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop}")
        self.weight_drop = float(weight_drop)
        self.weight_drop_seed = int(weight_drop_seed)
        # A seed generator only where it is used: its state is a variable, saved with the
        # weights, and models without weight drop keep keras.layers.GRU/LSTM's files.
        self._drop_seeds = (keras.random.SeedGenerator(self.weight_drop_seed, name="weight_drop")
                            if self.weight_drop else None)

    def recurrent_kernel(self, training: bool) -> Any:
        """The cell's recurrent kernel, with this step's weight drop when training."""
        kernel = self.cell.recurrent_kernel
        if not (training and self.weight_drop):
            return kernel
        return keras.random.dropout(keras.ops.convert_to_tensor(kernel), self.weight_drop,
                                    seed=self._drop_seeds)

    @contextlib.contextmanager
    def dropped(self, training: bool) -> Iterator[None]:
        """Keras' own loops (and cuDNN) read cell.recurrent_kernel: while inside, it is the
        dropped kernel in the cell's compute dtype."""
        if not (training and self.weight_drop):
            yield
            return
        cell = self.cell
        variable = cell.recurrent_kernel
        object.__setattr__(cell, "recurrent_kernel",
                           tf.cast(self.recurrent_kernel(training), cell.compute_dtype))
        try:
            yield
        finally:
            object.__setattr__(cell, "recurrent_kernel", variable)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight_drop": self.weight_drop,
                "weight_drop_seed": self.weight_drop_seed}


def _fast_path_ok(layer: keras.layers.RNN, mask: Any) -> bool:
    """Whether `layer` computes exactly what `gru` / `fused_lstm` compute (else Keras' own
    loop runs: on a GPU use_cudnn is True and cuDNN runs, as before)."""
    cell = layer.cell
    return (layer.use_cudnn is False and mask is None and not layer.go_backwards
            and not layer.unroll and not cell.dropout and not cell.recurrent_dropout
            and cell.use_bias and cell.activation in (keras.activations.tanh, tf.tanh)
            and cell.recurrent_activation in (keras.activations.sigmoid, tf.sigmoid)
            and getattr(cell, "reset_after", True))


def _fused_ok(layer: keras.layers.RNN, mask: Any, dtype: tf.DType) -> bool:
    """Whether the fused op runs `layer` for inputs of `dtype`: the fast path applies, the
    kernels are loaded and they take the dtype."""
    return _fast_path_ok(layer, mask) and kernels.ops() is not None and dtype in FUSED_DTYPES


# The class names stay "GRU" and "LSTM": Keras names a layer's entries in a .weights.h5 file
# after its class, so models saved with keras.layers.GRU / LSTM load into these unchanged.
@keras.saving.register_keras_serializable(package="charlm")
class GRU(WeightDrop, keras.layers.GRU):
    """keras.layers.GRU (reset_after=True) whose non-cuDNN loop is `fused_gru` (or `gru`
    where the kernels cannot be built), with weight drop."""

    def step(self, x: tf.Tensor, states: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One time step (generation): x (B, I) -> h (B, H), [h]; the fused op with one
        step where it applies, else Keras' cell."""
        if not _fused_ok(self, None, x.dtype):
            h, new = self.cell(x, states, training=False)
            return h, list(new) if isinstance(new, (list, tuple)) else [new]
        dtype = x.dtype
        cell = self.cell
        xz = tf.matmul(x, tf.cast(cell.kernel, dtype))[:, None]  # (B, 1, 3H)
        _, _, h = kernels.ops().charlm_gru_sequence(
            xz, tf.cast(cell.bias, F32), tf.cast(cell.recurrent_kernel, dtype),
            tf.cast(states[0], F32), _no_ids())
        h = tf.cast(h, states[0].dtype)
        return h, [h]

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _fast_path_ok(self, mask):
            with self.dropped(training):
                return super().inner_loop(sequences, initial_state, mask, training=training)
        dtype = sequences.dtype
        cell = self.cell
        state = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        weights = [tf.cast(w, dtype) for w in (cell.kernel, self.recurrent_kernel(training))]
        if kernels.ops() is not None and dtype in FUSED_DTYPES:
            outputs, h = fused_gru(sequences, state, *weights, tf.cast(cell.bias, F32),
                                   lookup=embedding_lookup(sequences))
        else:
            outputs, h = gru(sequences, state, *weights, tf.cast(cell.bias, F32))
        return h, outputs, [h]


@keras.saving.register_keras_serializable(package="charlm")
class LSTM(WeightDrop, keras.layers.LSTM):
    """keras.layers.LSTM whose non-cuDNN loop is `fused_lstm` where the kernels can be built
    (else Keras' own loop: the same scheme in plain TensorFlow ops measured slower), with
    weight drop."""

    def step(self, x: tf.Tensor, states: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One time step (generation): x (B, I) -> h (B, H), [h, c]; the fused op with one
        step where it applies, else Keras' cell."""
        if not _fused_ok(self, None, x.dtype):
            h, new = self.cell(x, states, training=False)
            return h, list(new)
        dtype = x.dtype
        cell = self.cell
        xz = tf.matmul(x, tf.cast(cell.kernel, dtype))[:, None]  # (B, 1, 4H)
        hs, _, cs = kernels.ops().charlm_lstm_sequence(
            xz, tf.cast(cell.bias, F32), tf.cast(cell.recurrent_kernel, dtype),
            tf.cast(states[0], dtype), tf.cast(states[1], F32), _no_ids())  # (B, 1, H) each
        return hs[:, 0], [hs[:, 0], tf.cast(cs[:, 0], states[1].dtype)]

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _fused_ok(self, mask, sequences.dtype):
            with self.dropped(training):
                return super().inner_loop(sequences, initial_state, mask, training=training)
        dtype = sequences.dtype
        cell = self.cell
        outputs, h, c = fused_lstm(sequences, initial_state[0], initial_state[1], *(
            tf.cast(w, dtype) for w in (cell.kernel, self.recurrent_kernel(training))),
            tf.cast(cell.bias, F32), lookup=embedding_lookup(sequences))
        return h, outputs, [h, c]


def _outputs_and_grads(layer: keras.layers.RNN, x: tf.Tensor) -> list[np.ndarray]:
    """A layer's outputs, final states and the gradients of a fixed weighting of them with
    respect to x and every weight."""
    probe = tf.sin(tf.range(1.0, 1.0 + layer.units, dtype=F32))  # (H,): not symmetric
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs, *states = layer(x)
        loss = tf.reduce_sum(outputs * probe) + sum(tf.reduce_sum(s * probe) for s in states)
    grads = tape.gradient(loss, [x, *layer.trainable_variables])
    return [np.asarray(t) for t in (outputs, *states, *grads)]


def check_kernels(tolerance: float = 1e-4) -> None:
    """Run the fused ops once against Keras' own loops on a small float32 batch (the LSTM's
    and the GRU's outputs, final states and every gradient; the loss op against TensorFlow's)
    and check that a NaN in the input reaches the same outputs as in Keras: a build that
    loads but computes wrong (a compiler's fast-math taking NaN for a number, say) fails
    here, not in a week's training. kernels.KernelsUnavailable naming what differs.
    `charlm kernels` runs it after the build."""
    from charlm.loss import token_nll

    if kernels.ops() is None:
        raise kernels.KernelsUnavailable("the kernels are not loaded")
    rng = np.random.default_rng(0)
    for cell, ours, theirs in (("lstm", LSTM, keras.layers.LSTM), ("gru", GRU, keras.layers.GRU)):
        x = rng.normal(size=(3, 5, 4)).astype("float32")
        pair = [cls(7, return_sequences=True, return_state=True) for cls in (ours, theirs)]
        for layer in pair:
            layer.use_cudnn = False
            layer.build(x.shape)
        for a, b in zip(pair[0].weights, pair[1].weights):
            value = rng.normal(size=a.shape).astype("float32") * 0.4
            a.assign(value)
            b.assign(value)
        got, want = (_outputs_and_grads(layer, tf.constant(x)) for layer in pair)
        worst = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
        if not worst <= tolerance:
            raise kernels.KernelsUnavailable(
                f"the fused {cell} differs from Keras' loop by {worst:.3g} (> {tolerance})")
        x[1, 2, 0] = np.nan
        got_nan, want_nan = (np.isnan(np.asarray(layer(x)[0])) for layer in pair)
        if not want_nan.any() or not np.array_equal(got_nan, want_nan):
            raise kernels.KernelsUnavailable(
                f"the fused {cell} does not pass a NaN on as Keras' loop does "
                f"({int(got_nan.sum())} NaN outputs, Keras {int(want_nan.sum())})")
    logits = rng.normal(size=(2, 3, 118)).astype("float32")
    logits[1, 0, 5] = np.nan
    targets = rng.integers(0, 118, size=(2, 3))
    targets[1, 0] = 7  # the NaN is another character's logit: the whole row's loss is NaN
    got = np.asarray(token_nll(tf.constant(targets), tf.constant(logits)))
    want = np.asarray(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits))
    finite = np.isfinite(want)
    if (not np.array_equal(np.isnan(got), np.isnan(want))
            or not np.allclose(got[finite], want[finite], rtol=tolerance, atol=tolerance)):
        raise kernels.KernelsUnavailable(f"the fused loss differs from TensorFlow's: {got} "
                                         f"against {want}")
