"""The per-character loss: softmax cross-entropy of each position's logits against its target.

On a CPU with the fused kernels (charlm.kernels) it is one op forward and one backward
(charlm/native/gates.cc, compiled for this machine); TensorFlow's
sparse_softmax_cross_entropy_with_logits and the ops around it (its pip build is compiled for
a baseline x86) took ~3 ms a batch at lstm 128x2, batch 128: a tenth of the training step.
On a GPU, without the kernels, or for logits other than float32, TensorFlow's op runs. Both
agree to float32 rounding, and both reject a target outside the vocabulary.
"""

from __future__ import annotations

import tensorflow as tf

from charlm import kernels
from charlm.devices import gpu_available


def token_nll(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """targets (B, T) int, logits (B, T, V) -> negative log-likelihood (B, T) in nats."""
    native = kernels.ops()
    if native is None or logits.dtype != tf.float32 or gpu_available():
        return tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
    vocab = tf.shape(logits)[-1]

    @tf.custom_gradient
    def run(rows: tf.Tensor, labels: tf.Tensor):
        nll, lse = native.charlm_sparse_xent(rows, labels)  # (N,), (N,)

        def grad(d_nll: tf.Tensor):
            return native.charlm_sparse_xent_grad(rows, labels, lse, d_nll), None  # (N, V)

        return nll, grad

    nll = run(tf.reshape(logits, [-1, vocab]), tf.reshape(tf.cast(targets, tf.int64), [-1]))
    return tf.reshape(nll, tf.shape(targets))
