"""get_config / from_config and .keras round trips give identical outputs."""
import keras
import numpy as np
import pytest

import spinenet_tf
from spinenet_tf import layers as L


def _images(size=128, batch=2):
  return np.random.default_rng(3).uniform(0, 1, (batch, size, size, 3)).astype('float32')


def _assert_same_outputs(a, b, x):
  ya, yb = a(x, training=False), b(x, training=False)
  for level in ya:
    np.testing.assert_array_equal(np.asarray(ya[level]), np.asarray(yb[level]))


@pytest.mark.parametrize('model_id', ['49S', 'mobile-49XS'])
def test_config_round_trip(model_id):
  model = spinenet_tf.build_backbone(model_id, (128, 128, 3),
                                     stochastic_depth_rate=0.1,
                                     kernel_regularizer=keras.regularizers.L2(4e-5))
  clone = spinenet_tf.SpineNet.from_config(model.get_config())
  assert clone.get_config() == model.get_config()
  clone.set_weights(model.get_weights())
  _assert_same_outputs(model, clone, _images())


def test_keras_file_round_trip(tmp_path):
  model = spinenet_tf.build_backbone('mobile-49XS', (None, None, 3))
  for v in model.weights:
    v.assign(np.random.default_rng(len(v.path)).normal(1.0, 0.1, v.shape))
  path = str(tmp_path / 'backbone.keras')
  model.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, spinenet_tf.SpineNet)
  assert loaded.count_params() == model.count_params()
  _assert_same_outputs(model, loaded, _images(256, 1))


def test_classifier_keras_file_round_trip(tmp_path):
  model = spinenet_tf.build_classifier(7, 'mobile-49XS', (128, 128, 3),
                                       dropout_rate=0.2)
  path = str(tmp_path / 'classifier.keras')
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_array_equal(np.asarray(model(_images(), training=False)),
                                np.asarray(loaded(_images(), training=False)))


@pytest.mark.parametrize('layer, shape', [
    (L.ConvNormAct(8, 3, 2, 'relu'), (1, 8, 8, 4)),
    (L.ConvNormAct(None, 3, 1, 'swish', depthwise=True), (1, 8, 8, 4)),
    (L.ResidualBlock(4, use_projection=True, strides=2), (1, 8, 8, 6)),
    (L.BottleneckBlock(4, use_projection=True, stochastic_depth_rate=0.2), (1, 8, 8, 6)),
    (L.MBConvBlock(6, 6, expand_ratio=3, se_ratio=0.25), (1, 8, 8, 6)),
    (L.SqueezeExcite(2), (1, 8, 8, 6)),
    (L.Resample(2, 16, 0.5, 12), (1, 16, 16, 64)),
    (L.Resample(-2, 16, 0.5, 12), (1, 4, 4, 16)),
    (L.MobileResample(2, 12), (1, 16, 16, 5)),
    (L.StochasticDepth(0.3), (1, 4, 4, 2)),
])
def test_layer_config_round_trip(layer, shape):
  x = np.random.default_rng(0).normal(size=shape).astype('float32')
  y = layer(x, training=False)
  clone = layer.__class__.from_config(layer.get_config())
  clone(x, training=False)
  clone.set_weights(layer.get_weights())
  np.testing.assert_allclose(np.asarray(clone(x, training=False)), np.asarray(y),
                             atol=1e-6)
  assert tuple(y.shape) == tuple(layer.compute_output_shape(shape))
  # Registered under the package name, so .keras files find it.
  assert keras.saving.get_registered_object(
      f'spinenet_tf>{layer.__class__.__name__}') is layer.__class__


def test_resample_geometry():
  down = L.Resample(3, 64, 0.5, 40)
  assert tuple(down(np.zeros((1, 32, 32, 256), 'float32')).shape) == (1, 4, 4, 40)
  assert len(down.pools) == 2
  up = L.Resample(-1, 64, 1.0, 8)
  assert tuple(up(np.zeros((1, 4, 4, 64), 'float32')).shape) == (1, 8, 8, 8)


def test_block_fusion_sum_and_weighted():
  a = np.full((1, 2, 2, 3), 2.0, 'float32')
  b = np.full((1, 2, 2, 3), -5.0, 'float32')
  np.testing.assert_allclose(np.asarray(L.BlockFusion('linear')([a, b])), -3.0)
  np.testing.assert_allclose(np.asarray(L.BlockFusion('relu')([a, b])), 0.0)
  weighted = L.BlockFusion(None, weighted=True)
  np.testing.assert_allclose(np.asarray(weighted([a, b])), -3.0 / 2.0001, rtol=1e-5)
  with pytest.raises(ValueError, match='share a shape'):
    L.BlockFusion()([a, np.zeros((1, 4, 4, 3), 'float32')])
