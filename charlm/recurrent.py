"""The CPU recurrent path of the GRU: the whole sequence with a hand-written gradient.

Keras' generic loop (what runs without cuDNN) multiplies the inputs by the kernel at every
time step, and TensorFlow's autodiff of that loop adds, per step, the two weight-gradient
products and their accumulation. Here, as in oneDNN's RNN primitive:

* forward: the input projection of all time steps is one big matmul before the loop; the
  loop runs only h @ recurrent_kernel and the gate math;
* backward (tf.custom_gradient): a reverse loop runs only the gate derivatives and
  dz @ recurrent_kernel^T; the kernel, recurrent kernel, bias and input gradients are big
  matmuls / sums over all time steps after it.

Matmul operands are in the inputs' dtype (bfloat16 under mixed_bfloat16); the state, the
gates and every sum stay float32 in between. The weights are Keras' own (kernel,
recurrent_kernel, bias (2, 3H); gates z r h, reset_after=True), so a model trains, saves and
loads as with keras.layers.GRU.

Only the GRU: the same scheme for the LSTM measured 0.8x Keras' loop at lstm 128x2 and
0.89x at lstm 512x3 (A/B in one process, benchmarks/README.md, "Recurrent path"), while the
GRU 384x2 gained 1.18x (bf16) and 1.3x (float32); the LSTM keeps keras.layers.LSTM.

Shapes: x (B, T, I) in the compute dtype; h0 (B, H); returns outputs (B, T, H) in the
compute dtype and the final state.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

F32 = tf.float32


def _project(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """(B, T, I) @ (I, G) -> (T, B, G) float32: every time step in one matmul."""
    batch, steps = tf.shape(x)[0], tf.shape(x)[1]
    time_major = tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, tf.shape(x)[2]])  # (T B, I)
    return tf.reshape(tf.cast(tf.matmul(time_major, kernel), F32), [steps, batch, -1])


def _weight_grads(x: tf.Tensor, previous: tf.Tensor, d_input: tf.Tensor,
                  d_recurrent: tf.Tensor, kernel: tf.Tensor, recurrent_kernel: tf.Tensor):
    """Gradients that need all time steps, as big matmuls: (dx, dkernel, drecurrent_kernel).

    x (B, T, I); previous (T, B, H) states entering each step; d_input / d_recurrent
    (T, B, G) float32 gradients of the input and recurrent projections.
    """
    dtype = kernel.dtype
    width = tf.shape(x)[2]
    x_flat = tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, width])  # (T B, I)
    d_in = tf.cast(tf.reshape(d_input, [-1, tf.shape(d_input)[2]]), dtype)  # (T B, G)
    d_rec = tf.cast(tf.reshape(d_recurrent, [-1, tf.shape(d_recurrent)[2]]), dtype)
    h_flat = tf.cast(tf.reshape(previous, [-1, tf.shape(previous)[2]]), dtype)  # (T B, H)
    d_kernel = tf.matmul(x_flat, d_in, transpose_a=True)  # (I, G)
    d_recurrent_kernel = tf.matmul(h_flat, d_rec, transpose_a=True)  # (H, G)
    dx = tf.matmul(d_in, kernel, transpose_b=True)  # (T B, I)
    dx = tf.transpose(tf.reshape(dx, [tf.shape(d_input)[0], -1, width]), [1, 0, 2])
    return tf.cast(dx, x.dtype), d_kernel, d_recurrent_kernel


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
            dx, d_kernel, d_recurrent = _weight_grads(x, previous, d_in, d_rec, kernel,
                                                      recurrent_kernel)
            d_bias = tf.cast(tf.stack([_column_sums(d_in), _column_sums(d_rec)]), bias.dtype)
            return dx, tf.cast(dh0, h0.dtype), d_kernel, d_recurrent, d_bias

        return (outputs, tf.cast(h, dtype)), grad

    return run(*(tf.convert_to_tensor(v) for v in (x, h0, kernel, recurrent_kernel, bias)))


def _fast_path_ok(layer: keras.layers.RNN, mask: Any) -> bool:
    """Whether `layer` computes exactly what `gru` computes (else Keras' own loop runs: on a
    GPU use_cudnn is True and cuDNN runs, as before)."""
    cell = layer.cell
    return (layer.use_cudnn is False and mask is None and not layer.go_backwards
            and not layer.unroll and not cell.dropout and not cell.recurrent_dropout
            and cell.use_bias and cell.activation in (keras.activations.tanh, tf.tanh)
            and cell.recurrent_activation in (keras.activations.sigmoid, tf.sigmoid)
            and cell.reset_after)


# The class name stays "GRU": Keras names a layer's entries in a .weights.h5 file after its
# class, so models saved with keras.layers.GRU load into this one unchanged.
@keras.saving.register_keras_serializable(package="charlm")
class GRU(keras.layers.GRU):
    """keras.layers.GRU (reset_after=True) whose non-cuDNN loop is `gru`."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _fast_path_ok(self, mask):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        dtype = sequences.dtype
        cell = self.cell
        state = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        outputs, h = gru(sequences, state, *(
            tf.cast(w, dtype) for w in (cell.kernel, cell.recurrent_kernel)),
            tf.cast(cell.bias, F32))
        return h, outputs, [h]
