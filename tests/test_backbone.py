"""Backbone shapes, checkpoints across input sizes, stochastic depth."""
import numpy as np
import pytest
import tensorflow as tf

import spinenet_tf
from spinenet_tf.layers import StochasticDepth


def _images(size, batch=2, seed=0):
  return np.random.default_rng(seed).uniform(0, 1, (batch, size, size, 3)).astype('float32')


@pytest.mark.parametrize('model_id, size, channels', [
    ('49S', 128, 128), ('49S', 256, 128), ('96', 128, 256),
    ('mobile-49XS', 128, 24), ('mobile-49S', 256, 40),
])
def test_output_shapes_per_level(model_id, size, channels):
  model = spinenet_tf.build_backbone(model_id, (size, size, 3))
  outputs = model(_images(size, batch=1), training=False)
  assert sorted(outputs, key=int) == ['3', '4', '5', '6', '7']
  for level, tensor in outputs.items():
    stride = 2 ** int(level)
    assert tuple(tensor.shape) == (1, size // stride, size // stride, channels)


def test_custom_levels_and_small_filter_scale():
  model = spinenet_tf.build_backbone(
      '49', (128, 128, 3), min_level=2, max_level=6,
      scaling=dict(endpoints_num_filters=16, filter_size_scale=0.25,
                   block_repeats=2))
  outputs = model(_images(128, 1), training=False)
  assert {k: tuple(v.shape) for k, v in outputs.items()} == {
      '2': (1, 32, 32, 16), '3': (1, 16, 16, 16), '4': (1, 8, 8, 16),
      '5': (1, 4, 4, 16), '6': (1, 2, 2, 16)}


def test_dynamic_input_size_matches_fixed_model():
  dynamic = spinenet_tf.build_backbone('mobile-49XS', (None, None, 3))
  fixed = spinenet_tf.build_backbone('mobile-49XS', (256, 256, 3))
  fixed.set_weights(dynamic.get_weights())
  assert dynamic.count_params() == fixed.count_params()
  for size in (128, 256, 384):
    out = dynamic(_images(size, 1), training=False)
    assert tuple(out['7'].shape) == (1, size // 128, size // 128, 24)
  a, b = dynamic(_images(256)), fixed(_images(256))
  for level in a:
    np.testing.assert_allclose(np.asarray(a[level]), np.asarray(b[level]), atol=1e-5)


@pytest.mark.parametrize('save_format', ['tf_checkpoint', 'weights_h5'])
def test_checkpoint_restores_into_model_of_another_input_size(tmp_path, save_format):
  small = spinenet_tf.build_backbone('49S', (128, 128, 3))
  for v in small.weights:  # distinct values everywhere, BN statistics included
    v.assign(np.random.default_rng(len(v.path)).normal(1.0, 0.1, v.shape))
  large = spinenet_tf.build_backbone('49S', (256, 256, 3))
  anysize = spinenet_tf.build_backbone('49S', (None, None, 3))
  if save_format == 'tf_checkpoint':
    path = tf.train.Checkpoint(model=small).write(str(tmp_path / 'ckpt'))
    for model in (large, anysize):
      tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched()
  else:
    path = str(tmp_path / 'small.weights.h5')
    small.save_weights(path)
    large.load_weights(path)
    anysize.load_weights(path)
  np.testing.assert_allclose(
      np.asarray(anysize(_images(128))['5']), np.asarray(small(_images(128))['5']),
      atol=1e-4)
  np.testing.assert_allclose(
      np.asarray(anysize(_images(256))['5']), np.asarray(large(_images(256))['5']),
      atol=1e-4)


def test_stochastic_depth_only_in_training():
  model = spinenet_tf.build_backbone(
      'mobile-49XS', (128, 128, 3), stochastic_depth_rate=0.5)
  x = _images(128, batch=4)
  first, second = model(x, training=False), model(x, training=False)
  np.testing.assert_array_equal(np.asarray(first['3']), np.asarray(second['3']))
  train_a, train_b = model(x, training=True), model(x, training=True)
  assert not np.allclose(np.asarray(train_a['3']), np.asarray(train_b['3']))


def test_stochastic_depth_layer_drops_whole_samples():
  layer = StochasticDepth(0.5, seed=1)
  x = np.ones((400, 3, 3, 2), 'float32')
  np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
  y = np.asarray(layer(x, training=True))
  per_sample = y.reshape(400, -1)
  assert set(np.unique(per_sample)) <= {0.0, 2.0}
  assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
  assert 0.35 < (per_sample[:, 0] > 0).mean() < 0.65
  with pytest.raises(ValueError, match='rate must be in'):
    StochasticDepth(1.0)


def test_swish_and_sync_bn_and_weighted_fusion_build():
  model = spinenet_tf.build_backbone(
      'mobile-49XS', (128, 128, 3), activation='swish', use_sync_bn=True,
      weighted_fusion=True)
  plain = spinenet_tf.build_backbone('mobile-49XS', (128, 128, 3))
  fused_parents = sum(len(b.parents) + len(b.merged)
                      for b in model.plan.blocks if not b.is_stem)
  assert model.count_params() == plain.count_params() + fused_parents
  assert model.get_layer('stem').norm.synchronized
  out = model(_images(128, 1), training=False)
  assert np.all(np.isfinite(np.asarray(out['7'])))
  with pytest.raises(ValueError, match='activation must be one of'):
    spinenet_tf.build_backbone('mobile-49XS', activation='gelu')


def test_one_line_constructors():
  model = spinenet_tf.spinenet_mobile_49xs((128, 128, 3))
  assert model.count_params() == 869_400
  assert spinenet_tf.spinenet_49.__doc__.startswith('SpineNet 49 backbone')
