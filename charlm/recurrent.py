"""The CPU recurrent path: whole-sequence LSTM / GRU with hand-written gradients.

Keras' generic loop (what runs without cuDNN) multiplies the inputs by the kernel at every
time step, and TensorFlow's autodiff of that loop adds, per step, the two weight-gradient
products and their accumulation: many small ops per step, each paying the executor's
per-op cost. Here, as in oneDNN's RNN primitive:

* forward: the input projection of all time steps is one big matmul before the loop; the
  loop runs only h @ recurrent_kernel and the gate math;
* backward (tf.custom_gradient): a reverse loop runs only the gate derivatives and
  dz @ recurrent_kernel^T; the kernel, recurrent kernel, bias and input gradients are big
  matmuls / sums over all time steps after it.

Matmul operands are in the inputs' dtype (bfloat16 under mixed_bfloat16, the fast units);
the state, the gates and every sum stay float32 in between. The weights are Keras' own
(kernel, recurrent_kernel, bias; gate order i f c o for the LSTM, z r h for the GRU with
reset_after=True), so a model trains, saves and loads as the Keras layers do.

Shapes: x (B, T, I) in the compute dtype; states (B, H); returns outputs (B, T, H) in the
compute dtype and the final states.
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


def _join(parts: list[tf.Tensor]) -> tf.Tensor:
    """(B, H) pieces -> (B, n H), gate-major as Keras lays gates out."""
    return tf.concat(parts, axis=1)


def lstm(x: tf.Tensor, h0: tf.Tensor, c0: tf.Tensor, kernel: tf.Tensor,
         recurrent_kernel: tf.Tensor, bias: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Keras LSTM (tanh, sigmoid, gates i f c o) over all of x: (outputs, h, c)."""
    # tanh(z) = 2 sigmoid(2 z) - 1: with the candidate gate's columns doubled (exact in any
    # float), one sigmoid over all four gates replaces four slices and two activations.
    units = tf.shape(recurrent_kernel)[0]
    scale = tf.concat([tf.ones([2 * units]), tf.fill([units], 2.0), tf.ones([units])], 0)
    kernel = kernel * tf.cast(scale, kernel.dtype)
    recurrent_kernel = recurrent_kernel * tf.cast(scale, recurrent_kernel.dtype)
    bias = tf.cast(bias, F32) * scale

    @tf.custom_gradient
    def run(x, h0, c0, kernel, recurrent_kernel, bias):
        dtype = x.dtype
        xz = _project(x, kernel) + bias  # (T, B, 4H), candidate columns doubled
        steps = tf.shape(xz)[0]
        inputs = tf.TensorArray(F32, size=steps).unstack(xz)

        def body(t, h, c, hs, cs, acts):
            z = inputs.read(t) + tf.cast(tf.matmul(tf.cast(h, dtype), recurrent_kernel), F32)
            a = tf.sigmoid(z)  # (B, 4H)
            i, f, g, o = tf.split(a, 4, axis=1)
            c = f * c + i * (2.0 * g - 1.0)
            h = o * tf.tanh(c)
            return t + 1, h, c, hs.write(t, h), cs.write(t, c), acts.write(t, a)

        arrays = [tf.TensorArray(F32, size=steps) for _ in range(3)]
        _, h, c, hs, cs, acts = tf.while_loop(
            lambda t, *_: t < steps, body,
            (0, tf.cast(h0, F32), tf.cast(c0, F32), *arrays))
        hs, cs, acts = hs.stack(), cs.stack(), acts.stack()  # (T, B, H) x 2, (T, B, 4H)
        outputs = tf.transpose(tf.cast(hs, dtype), [1, 0, 2])  # (B, T, H)

        def grad(d_outputs, dh_last, dc_last):
            d_out = tf.transpose(tf.cast(d_outputs, F32), [1, 0, 2])  # (T, B, H)
            d_out_ta = tf.TensorArray(F32, size=steps).unstack(d_out)
            acts_ta = tf.TensorArray(F32, size=steps).unstack(acts)
            c_ta = tf.TensorArray(F32, size=steps).unstack(cs)
            c_prev_ta = tf.TensorArray(F32, size=steps).unstack(
                _stack_previous(tf.cast(c0, F32), cs))

            def back(t, dh, dc, dzs):
                dh = dh + d_out_ta.read(t)
                a = acts_ta.read(t)
                i, f, g, o = tf.split(a, 4, axis=1)
                tanh_c = tf.tanh(c_ta.read(t))
                dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
                # d/da of c and h per gate; the candidate's 2 from c = f c + i (2 g - 1)
                d_a = _join([dc * (2.0 * g - 1.0), dc * c_prev_ta.read(t), 2.0 * dc * i,
                             dh * tanh_c])
                dz = d_a * a * (1.0 - a)  # (B, 4H)
                dh = tf.cast(tf.matmul(tf.cast(dz, dtype), recurrent_kernel, transpose_b=True),
                             F32)
                return t - 1, dh, dc * f, dzs.write(t, dz)

            _, dh0, dc0, dzs = tf.while_loop(
                lambda t, *_: t >= 0, back,
                (steps - 1, tf.cast(dh_last, F32), tf.cast(dc_last, F32),
                 tf.TensorArray(F32, size=steps)))
            dz = dzs.stack()  # (T, B, 4H)
            previous = _stack_previous(tf.cast(h0, F32), hs)
            dx, d_kernel, d_recurrent = _weight_grads(x, previous, dz, dz, kernel,
                                                      recurrent_kernel)
            d_bias = _column_sums(dz)
            return (dx, tf.cast(dh0, h0.dtype), tf.cast(dc0, c0.dtype), d_kernel, d_recurrent,
                    d_bias)

        return (outputs, tf.cast(h, dtype), tf.cast(c, dtype)), grad

    # Tensors, not variables: custom_gradient returns the weights' gradients as inputs'.
    return run(*(tf.convert_to_tensor(v) for v in (x, h0, c0, kernel, recurrent_kernel, bias)))


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
    """Whether `layer` computes exactly what `lstm` / `gru` compute (else Keras' loop runs)."""
    cell = layer.cell
    return (layer.use_cudnn is False and mask is None and not layer.go_backwards
            and not layer.unroll and not cell.dropout and not cell.recurrent_dropout
            and cell.use_bias and cell.activation in (keras.activations.tanh, tf.tanh)
            and cell.recurrent_activation in (keras.activations.sigmoid, tf.sigmoid)
            and getattr(cell, "reset_after", True))


# The class names stay "LSTM" and "GRU": Keras names a layer's entries in a .weights.h5 file
# after its class, so models saved with keras.layers.LSTM/GRU load into these unchanged.
@keras.saving.register_keras_serializable(package="charlm")
class LSTM(keras.layers.LSTM):
    """keras.layers.LSTM whose non-cuDNN loop is `lstm` (same weights, same results)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _fast_path_ok(self, mask):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        dtype = sequences.dtype
        cell = self.cell
        outputs, h, c = lstm(sequences, *initial_state[:2], *(
            tf.cast(w, dtype) for w in (cell.kernel, cell.recurrent_kernel)),
            tf.cast(cell.bias, F32))
        return h, outputs, [h, c]


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
