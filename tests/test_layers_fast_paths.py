"""Speed-ups that must not change the function:

- `BatchNorm` (TF's fused kernel) equals `keras.layers.BatchNormalization`:
  outputs, gradients and moving statistics, training and inference,
  float32 and mixed_bfloat16 layers, and a 1x1 map of batch 1 (variance 0);
- resampling projects before upsampling: equal to the published order
  (upsample, then 1x1 conv + BN) in training mode, BN statistics and
  gradients included;
- swish on the TensorFlow backend equals Keras's silu: values and float32
  gradients bit for bit; bfloat16 gradients (computed in float32, rounded
  once) closer to the exact ones.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.layers.common import BatchNorm, activation_fn
from spinenet_tf.layers import tf_swish
from spinenet_tf.layers.resample import MobileResample, Resample
from spinenet_tf.models.retinanet import build_retinanet


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


def _swish_and_gradient(fn, x):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
  # A non-uniform upstream gradient, so dy * s' is exercised.
  dy = tf.cast(tf.linspace(-2.0, 2.0, x.shape[0]), x.dtype)
  return y, tape.gradient(y, x, output_gradients=dy), dy


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_swish_equals_keras_silu(dtype):
  swish = activation_fn('swish')
  assert swish is not keras.activations.silu  # the TF-backend version
  # Every finite bfloat16 value of magnitude below 100 (both dtypes).
  bits = np.arange(2**16, dtype=np.uint32) << 16
  values = bits.view(np.float32)
  values = values[np.isfinite(values) & (np.abs(values) < 100)]
  x = tf.constant(values, dtype)
  y, grad, dy = _swish_and_gradient(swish, x)
  ref_y, ref_grad, _ = _swish_and_gradient(keras.activations.silu, x)
  np.testing.assert_array_equal(y.numpy(), ref_y.numpy())
  x64 = values.astype(np.float64)
  s = 1 / (1 + np.exp(-x64))
  exact = tf.cast(dy, tf.float64).numpy() * s * (1 + x64 * (1 - s))
  if dtype == 'float32':
    np.testing.assert_array_equal(grad.numpy(), ref_grad.numpy())
  else:
    grad, ref_grad = (tf.cast(g, tf.float64).numpy() for g in (grad, ref_grad))
    assert np.abs(grad - exact).sum() < 0.6 * np.abs(ref_grad - exact).sum()
    rounded = tf.cast(tf.cast(exact, tf.bfloat16), tf.float64).numpy()
    assert np.mean(grad == rounded) > 0.999  # Keras's: 0.948


def _retinanet_loss_and_gradients(policy, swish, weights=None):
  """Loss and gradients of a small training-mode RetinaNet under dtype
  policy `policy`, with `swish` as the TF-backend swish."""
  previous = keras.config.dtype_policy(), tf_swish.swish
  keras.config.set_dtype_policy(policy)
  tf_swish.swish = swish
  try:
    model = build_retinanet('49S', num_classes=3, input_shape=(128, 128, 3),
                            num_filters=32)
    if weights is not None:
      model.set_weights(weights)
    x = tf.random.stateless_normal([2, 128, 128, 3], seed=[0, 1])
    with tf.GradientTape() as tape:
      outputs = tf.nest.flatten(model(x, training=True))
      loss = sum(tf.reduce_sum(tf.cast(o, tf.float32)**2) for o in outputs)
    grads = tape.gradient(loss, model.trainable_variables)
    return model.get_weights(), float(loss), [g.numpy() for g in grads]
  finally:
    keras.config.set_dtype_policy(previous[0])
    tf_swish.swish = previous[1]


def test_retinanet_gradients_with_swish_match_keras_silu():
  """A whole training-mode RetinaNet: float32 loss and gradients bit for
  bit as with Keras's silu; mixed_bfloat16 gradients as far from the
  float32 ones as with Keras's silu (within 10%)."""
  ours = tf_swish.swish
  silu = keras.activations.silu
  weights, loss, grads = _retinanet_loss_and_gradients('float32', ours)
  _, ref_loss, ref_grads = _retinanet_loss_and_gradients('float32', silu,
                                                         weights)
  assert loss == ref_loss
  for grad, ref_grad in zip(grads, ref_grads):
    np.testing.assert_array_equal(grad, ref_grad)
  errors = {}
  for name, swish in (('ours', ours), ('keras', silu)):
    _, _, half = _retinanet_loss_and_gradients('mixed_bfloat16', swish,
                                               weights)
    errors[name] = np.sqrt(sum(np.sum((h - g)**2)
                               for h, g in zip(half, grads)))
  # bfloat16 rounding through the whole network dominates (both ~8% of the
  # gradient norm): the cheaper swish gradient must not make it worse.
  assert errors['ours'] < 1.1 * errors['keras']
