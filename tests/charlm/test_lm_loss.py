"""charlm.loss: the fused softmax cross-entropy computes TensorFlow's loss and gradient, rejects
a target outside the vocabulary by its value, and steps aside without the kernels."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from charlm import kernels
from charlm.loss import token_nll

pytestmark = pytest.mark.skipif(kernels.ops() is None, reason="no C++ compiler here")


def _loss_and_grad(fn, targets, logits, weights):
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = tf.reduce_sum(fn(targets, logits) * weights) / 7.0
    return loss.numpy(), tape.gradient(loss, logits).numpy()


# Vocabularies on both sides of the 16-lane vector width; large logits test the max shift.
@pytest.mark.parametrize("batch,steps,vocab,scale", [(3, 5, 7, 1.0), (4, 9, 119, 3.0),
                                                      (2, 3, 33, 60.0)])
def test_matches_tensorflows_loss_and_gradient(batch, steps, vocab, scale):
    rng = np.random.default_rng(vocab)
    logits = tf.constant(rng.normal(size=(batch, steps, vocab)).astype("float32") * scale)
    targets = tf.constant(rng.integers(0, vocab, (batch, steps)), tf.int64)
    weights = tf.constant((rng.random((batch, steps)) > 0.3).astype("float32"))
    native = kernels.ops()
    with mock.patch.object(native, "charlm_sparse_xent", wraps=native.charlm_sparse_xent) as spy:
        ours = _loss_and_grad(token_nll, targets, logits, weights)
    assert spy.call_count == 1
    theirs = _loss_and_grad(tf.nn.sparse_softmax_cross_entropy_with_logits, targets, logits,
                            weights)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4, atol=1e-6)
    assert token_nll(targets, logits).shape == (batch, steps)


def test_a_target_outside_the_vocabulary_is_named():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label 12 is outside \[0, 12\)"):
        token_nll(tf.constant([[3, 12]], tf.int64), tf.zeros((1, 2, 12)))


def test_without_the_kernels_tensorflows_op_runs(monkeypatch):
    monkeypatch.setenv("CHARLM_KERNELS", "0")
    targets, logits = tf.constant([[1, 0]], tf.int64), tf.constant([[[0.0, 2.0], [1.0, 1.0]]])
    with mock.patch.object(tf.nn, "sparse_softmax_cross_entropy_with_logits",
                           wraps=tf.nn.sparse_softmax_cross_entropy_with_logits) as spy:
        nll = token_nll(targets, logits).numpy()
    assert spy.call_count == 1
    np.testing.assert_allclose(nll, [[np.log1p(np.exp(-2.0)), np.log(2.0)]], rtol=1e-6)
