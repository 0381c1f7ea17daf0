"""Two speed-ups that must not change the function:

- `BatchNorm` (TF's fused kernel) equals `keras.layers.BatchNormalization`:
  outputs, gradients and moving statistics, training and inference,
  float32 and mixed_bfloat16 layers, and a 1x1 map of batch 1 (variance 0);
- resampling projects before upsampling: equal to the published order
  (upsample, then 1x1 conv + BN) in training mode, BN statistics and
  gradients included.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.layers.common import BatchNorm
from spinenet_tf.layers.resample import MobileResample, Resample


def _norm_pair(shape, policy):
  reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3,
                                              dtype=policy)
  fused = BatchNorm(momentum=0.9, epsilon=1e-3, dtype=policy)
  rng = np.random.default_rng(1)
  for layer in (reference, fused):
    layer.build(shape)
  for ref_var, var in zip(reference.weights, fused.weights):
    value = rng.uniform(0.5, 1.5, ref_var.shape).astype('float32')
    ref_var.assign(value)
    var.assign(value)
  return reference, fused


def _outputs_and_gradients(layer, x, training):
  variables = [layer.gamma, layer.beta]
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = layer(x, training=training)
    loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 3)
  return y, tape.gradient(loss, [x] + variables)


@pytest.mark.parametrize('shape', [(4, 16, 16, 8), (1, 1, 1, 8)])
@pytest.mark.parametrize('policy, dtype', [('float32', 'float32'),
                                           ('mixed_bfloat16', 'bfloat16')])
@pytest.mark.parametrize('training', [True, False])
def test_batch_norm_equals_keras(shape, policy, dtype, training):
  reference, fused = _norm_pair(shape, policy)
  x = tf.cast(np.random.default_rng(0).normal(2.0, 3.0, shape), dtype)
  y_ref, grads_ref = _outputs_and_gradients(reference, x, training)
  y, grads = _outputs_and_gradients(fused, x, training)
  assert y.dtype == y_ref.dtype == x.dtype
  tol = 1e-5 if dtype == 'float32' else 2e-2
  np.testing.assert_allclose(tf.cast(y, tf.float32), tf.cast(y_ref, tf.float32),
                             rtol=tol, atol=tol)
  for got, want in zip(grads, grads_ref):
    got, want = (tf.cast(g, tf.float32).numpy() for g in (got, want))
    np.testing.assert_allclose(got, want, rtol=tol,
                               atol=tol * max(np.abs(want).max(), 1e-3))
  for got, want in zip(fused.non_trainable_weights,
                       reference.non_trainable_weights):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def _published_order(layer, x):
  """Resample's layers in the paper's order: ..., upsample, project."""
  for unit in layer._pipeline():  # pylint: disable=protected-access
    if unit is not layer.project:
      x = unit(x, training=True)
      if unit is layer.upsample:
        x = layer.project(x, training=True)
  return x


@pytest.mark.parametrize('build', [
    lambda: Resample(-2, parent_filters=16, alpha=0.5, target_filters=24),
    lambda: MobileResample(-3, target_filters=12),
])
def test_projecting_before_upsampling_equals_the_published_order(build):
  layer, published = build(), build()
  x = tf.constant(np.random.default_rng(0).normal(size=(2, 4, 4, 16)),
                  tf.float32)
  layer.build(x.shape)
  published.build(x.shape)
  for ours, theirs in zip(layer.weights, published.weights):
    theirs.assign(ours)

  results = []
  for fn in (lambda: layer(x, training=True),
             lambda: _published_order(published, x)):
    model = layer if not results else published
    with tf.GradientTape() as tape:
      y = fn()
      loss = tf.reduce_sum(tf.sin(y))
    results.append((y, tape.gradient(loss, model.trainable_weights),
                    [v.numpy() for v in model.non_trainable_weights]))
  (y, grads, moving), (y_pub, grads_pub, moving_pub) = results
  assert y.shape == (2, 4 * 2 ** -layer.level_change,
                     4 * 2 ** -layer.level_change, layer.target_filters)
  np.testing.assert_allclose(y, y_pub, rtol=1e-5, atol=1e-5)
  for got, want in zip(grads, grads_pub):  # float32 sums in another order
    np.testing.assert_allclose(got, want, rtol=1e-4,
                               atol=1e-5 * np.abs(want).max())
  for got, want in zip(moving, moving_pub):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
