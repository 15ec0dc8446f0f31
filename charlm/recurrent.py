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
  and input gradients are big matmuls over all time steps after it.

Where the kernels cannot be built (no C++ compiler) or are turned off (CHARLM_KERNELS=0),
the GRU runs `gru`, the same scheme in plain TensorFlow ops (a while-loop), and the LSTM
Keras' own loop (the plain-ops scheme measured 0.8x Keras' loop for the LSTM).

Matmul operands are in the inputs' dtype (bfloat16 under mixed_bfloat16); the state, the
gates and every sum stay float32 in between. The weights are Keras' own (LSTM: kernel,
recurrent_kernel, bias (4H,), gates i f c o; GRU: bias (2, 3H), gates z r h,
reset_after=True), so a model trains, saves and loads as with keras.layers.LSTM / GRU.

Shapes: x (B, T, I) in the compute dtype; h0, c0 (B, H); outputs (B, T, H) in the compute
dtype and the final states.
"""

from __future__ import annotations

from typing import Any

import keras
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


def _project(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """(B, T, I) @ (I, G) -> (T, B, G) float32: every time step in one matmul."""
    batch, steps = tf.shape(x)[0], tf.shape(x)[1]
    return tf.reshape(tf.cast(tf.matmul(_time_major(x), kernel), F32), [steps, batch, -1])


def _weight_grads(x: tf.Tensor, previous: tf.Tensor, d_input: tf.Tensor,
                  d_recurrent: tf.Tensor, kernel: tf.Tensor):
    """Gradients that need all time steps, as big matmuls: (dx, dkernel, drecurrent_kernel).

    Rows (one per batch row and step, in any one order shared by all four): x (N, I);
    previous (N, H) the states entering each step; d_input / d_recurrent (N, G) gradients
    of the input and recurrent projections. dx (N, I) in x's dtype.
    """
    dtype = kernel.dtype
    d_in, d_rec = tf.cast(d_input, dtype), tf.cast(d_recurrent, dtype)
    d_kernel = tf.matmul(x, d_in, transpose_a=True)  # (I, G)
    d_recurrent_kernel = tf.matmul(tf.cast(previous, dtype), d_rec, transpose_a=True)  # (H, G)
    dx = tf.matmul(d_in, kernel, transpose_b=True)  # (N, I)
    return tf.cast(dx, x.dtype), d_kernel, d_recurrent_kernel


def _column_sums(values: tf.Tensor) -> tf.Tensor:
    """(T, B, G) -> (G,): summed over time and batch (a reduction over axes [0, 1] of a 3-D
    tensor takes Eigen's slow generic path: measured ~10x a 2-D column sum)."""
    return tf.reduce_sum(tf.reshape(values, [-1, tf.shape(values)[2]]), axis=0)


def _stack_previous(first: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """(T, B, H) states entering each step: first, then outputs[:-1]."""
    return tf.concat([first[None], outputs[:-1]], axis=0)


def _previous(first: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
    """(B, T, H) states entering each step: first (B, H), then outputs[:, :-1]."""
    return tf.concat([first[:, None], outputs[:, :-1]], axis=1)


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
               recurrent_kernel: tf.Tensor, bias: tf.Tensor
               ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Keras LSTM (tanh, sigmoid, gates i f c o; bias (4H,)) over all of x, the recurrence in
    one fused op each way (charlm.kernels): (outputs (B, T, H), h, c). kernel and
    recurrent_kernel in x's dtype; the cell state float32 throughout, the gates saved for the
    gradient in x's dtype (bfloat16 halves them)."""
    native = kernels.ops()
    assert native is not None, "fused_lstm needs the kernels (charlm.kernels.ops())"

    @tf.custom_gradient
    def run(x, h0, c0, kernel, recurrent_kernel, bias):
        dtype = x.dtype
        xz = tf.reshape(tf.matmul(_rows(x), kernel), [tf.shape(x)[0], tf.shape(x)[1], -1])
        c_first = tf.cast(c0, F32)
        hs, gates, cs = native.charlm_lstm_sequence(
            xz, tf.cast(bias, F32), recurrent_kernel, tf.cast(h0, dtype),
            c_first)  # (B, T, H), (B, T, 4H), (B, T, H) float32

        def grad(d_outputs, dh_last, dc_last):
            dz, dh0, dc0, d_bias = native.charlm_lstm_sequence_grad(
                gates, cs, c_first, tf.cast(d_outputs, dtype), tf.cast(dh_last, F32),
                tf.cast(dc_last, F32), recurrent_kernel)  # dz (B, T, 4H)
            previous = _previous(tf.cast(h0, dtype), hs)  # (B, T, H)
            dx, d_kernel, d_recurrent = _weight_grads(
                _rows(x), _rows(previous), _rows(dz), _rows(dz), kernel)
            return (tf.reshape(dx, tf.shape(x)), tf.cast(dh0, h0.dtype), tf.cast(dc0, c0.dtype),
                    d_kernel, d_recurrent, tf.cast(tf.reduce_sum(d_bias, axis=0), bias.dtype))

        return (hs, hs[:, -1], tf.cast(cs[:, -1], dtype)), grad

    return run(*(tf.convert_to_tensor(v)
                 for v in (x, h0, c0, kernel, recurrent_kernel, bias)))


def fused_gru(x: tf.Tensor, h0: tf.Tensor, kernel: tf.Tensor, recurrent_kernel: tf.Tensor,
              bias: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`gru` with the recurrence in one fused op each way (charlm.kernels)."""
    native = kernels.ops()
    assert native is not None, "fused_gru needs the kernels (charlm.kernels.ops())"

    @tf.custom_gradient
    def run(x, h0, kernel, recurrent_kernel, bias):
        dtype = x.dtype
        xz = tf.reshape(tf.matmul(_rows(x), kernel), [tf.shape(x)[0], tf.shape(x)[1], -1])
        hs, saved, h = native.charlm_gru_sequence(
            xz, tf.cast(bias, F32), recurrent_kernel, tf.cast(h0, F32))  # (B, T, H), (B, T, 5H)

        def grad(d_outputs, dh_last):
            d_in, d_rec, dh0, d_bias = native.charlm_gru_sequence_grad(
                saved, tf.cast(d_outputs, dtype), tf.cast(dh_last, F32),
                recurrent_kernel)  # (B, T, 3H) x2
            previous = _previous(tf.cast(h0, dtype), hs)  # (B, T, H)
            dx, d_kernel, d_recurrent = _weight_grads(
                _rows(x), _rows(previous), _rows(d_in), _rows(d_rec), kernel)
            return (tf.reshape(dx, tf.shape(x)), tf.cast(dh0, h0.dtype), d_kernel, d_recurrent,
                    tf.cast(tf.reduce_sum(d_bias, axis=0), bias.dtype))  # (2, 3H)

        return (hs, tf.cast(h, dtype)), grad

    return run(*(tf.convert_to_tensor(v) for v in (x, h0, kernel, recurrent_kernel, bias)))


def _fast_path_ok(layer: keras.layers.RNN, mask: Any) -> bool:
    """Whether `layer` computes exactly what `gru` / `fused_lstm` compute (else Keras' own
    loop runs: on a GPU use_cudnn is True and cuDNN runs, as before)."""
    cell = layer.cell
    return (layer.use_cudnn is False and mask is None and not layer.go_backwards
            and not layer.unroll and not cell.dropout and not cell.recurrent_dropout
            and cell.use_bias and cell.activation in (keras.activations.tanh, tf.tanh)
            and cell.recurrent_activation in (keras.activations.sigmoid, tf.sigmoid)
            and getattr(cell, "reset_after", True))


# The class names stay "GRU" and "LSTM": Keras names a layer's entries in a .weights.h5 file
# after its class, so models saved with keras.layers.GRU / LSTM load into these unchanged.
@keras.saving.register_keras_serializable(package="charlm")
class GRU(keras.layers.GRU):
    """keras.layers.GRU (reset_after=True) whose non-cuDNN loop is `fused_gru` (or `gru`
    where the kernels cannot be built)."""

    def step(self, x: tf.Tensor, states: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One time step (generation): x (B, I) -> h (B, H), [h]; the fused op with one
        step where it applies, else Keras' cell."""
        if (not _fast_path_ok(self, None) or kernels.ops() is None
                or x.dtype not in FUSED_DTYPES):
            h, new = self.cell(x, states, training=False)
            return h, list(new) if isinstance(new, (list, tuple)) else [new]
        dtype = x.dtype
        cell = self.cell
        xz = tf.matmul(x, tf.cast(cell.kernel, dtype))[:, None]  # (B, 1, 3H)
        _, _, h = kernels.ops().charlm_gru_sequence(
            xz, tf.cast(cell.bias, F32), tf.cast(cell.recurrent_kernel, dtype),
            tf.cast(states[0], F32))
        h = tf.cast(h, states[0].dtype)
        return h, [h]

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _fast_path_ok(self, mask):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        dtype = sequences.dtype
        cell = self.cell
        state = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        run = fused_gru if kernels.ops() is not None and dtype in FUSED_DTYPES else gru
        outputs, h = run(sequences, state, *(
            tf.cast(w, dtype) for w in (cell.kernel, cell.recurrent_kernel)),
            tf.cast(cell.bias, F32))
        return h, outputs, [h]


@keras.saving.register_keras_serializable(package="charlm")
class LSTM(keras.layers.LSTM):
    """keras.layers.LSTM whose non-cuDNN loop is `fused_lstm` where the kernels can be built
    (else Keras' own loop: the same scheme in plain TensorFlow ops measured slower)."""

    def step(self, x: tf.Tensor, states: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One time step (generation): x (B, I) -> h (B, H), [h, c]; the fused op with one
        step where it applies, else Keras' cell."""
        if (not _fast_path_ok(self, None) or kernels.ops() is None
                or x.dtype not in FUSED_DTYPES):
            h, new = self.cell(x, states, training=False)
            return h, list(new)
        dtype = x.dtype
        cell = self.cell
        xz = tf.matmul(x, tf.cast(cell.kernel, dtype))[:, None]  # (B, 1, 4H)
        hs, _, cs = kernels.ops().charlm_lstm_sequence(
            xz, tf.cast(cell.bias, F32), tf.cast(cell.recurrent_kernel, dtype),
            tf.cast(states[0], dtype), tf.cast(states[1], F32))  # (B, 1, H) each
        return hs[:, 0], [hs[:, 0], tf.cast(cs[:, 0], states[1].dtype)]

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if (not _fast_path_ok(self, mask) or kernels.ops() is None
                or sequences.dtype not in FUSED_DTYPES):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        dtype = sequences.dtype
        cell = self.cell
        outputs, h, c = fused_lstm(sequences, initial_state[0], initial_state[1], *(
            tf.cast(w, dtype) for w in (cell.kernel, cell.recurrent_kernel)),
            tf.cast(cell.bias, F32))
        return h, outputs, [h, c]
