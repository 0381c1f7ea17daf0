"""ResNet-50/101/152 backbones (the paper's scale-decreased baseline):
parameter counts equal Model Garden's, every keyword takes effect, bad
input is refused naming the argument, configs round-trip."""
import keras
import numpy as np
import pytest

from spinenet_tf.models import resnet
from benchmarks.model_garden import build_reference_resnet
from tests.test_options_effect import assert_effect

# tf-models-official 2.20.0, `retinanet_resnetfpn_coco`'s backbone.
PUBLISHED_RESNET50 = 23_561_152


@pytest.mark.parametrize('depth', [50, 101, 152])
def test_parameter_count_equals_model_garden(depth):
  ours = resnet.build_resnet(f'resnet{depth}', (256, 256, 3))
  assert ours.count_params() == build_reference_resnet(depth, 256).count_params()
  if depth == 50:
    assert ours.count_params() == PUBLISHED_RESNET50


def test_levels_and_shapes():
  model = resnet.build_resnet('ResNet-50', (128, 128, 3))
  assert model.output_specs == {
      '2': (None, 32, 32, 256), '3': (None, 16, 16, 512),
      '4': (None, 8, 8, 1024), '5': (None, 4, 4, 2048)}
  assert [layer.name for layer in model.layers[1:4]] == [
      'stem', 'stem_pool', resnet.block_name(2, 0)]


def test_depth_multiplier_scales_widths_like_model_garden():
  from official.vision.modeling.backbones import resnet as mg_resnet
  import tf_keras
  reference = mg_resnet.ResNet(
      model_id=50, depth_multiplier=0.25,
      input_specs=tf_keras.layers.InputSpec(shape=[None, 64, 64, 3]))
  ours = resnet.build_resnet('resnet50', (64, 64, 3), depth_multiplier=0.25)
  assert ours.count_params() == reference.count_params() == 1_494_256


SMALL = dict(model_id='resnet50', input_shape=(32, 32, 3),
             depth_multiplier=0.0625)
# build_resnet keyword -> a non-default value.
RESNET_VALUES = {
    'model_id': 'resnet101',
    'input_shape': (64, 64, 3),
    'depth_multiplier': 0.125,
    'activation': 'swish',
    'use_sync_bn': True,
    'norm_momentum': 0.9,
    'norm_epsilon': 1e-2,
    'stochastic_depth_rate': 0.2,
    'kernel_initializer': 'he_normal',
    'kernel_regularizer': 'l2',
    'name': 'my_resnet',
    'trainable': False,
}


def test_resnet_table_is_complete():
  assert set(RESNET_VALUES) == {'model_id', 'input_shape',
                                *resnet.RESNET_OPTIONS}


@pytest.mark.parametrize('key', sorted(RESNET_VALUES))
def test_resnet_keyword_takes_effect(key):
  assert_effect(resnet.build_resnet, SMALL, key, RESNET_VALUES[key])


@pytest.mark.parametrize('kwargs, match', [
    (dict(model_id='resnet51'), 'model_id must be one of'),
    (dict(input_shape=(32, 32)), 'input_shape must be'),
    (dict(depth_multiplier=0), 'depth_multiplier must be'),
    (dict(activation='gelu'), 'activation must be'),
    (dict(use_sync_bn='yes'), 'use_sync_bn must be'),
    (dict(stochastic_depth_rate=1.0), 'stochastic_depth_rate must be'),
])
def test_bad_arguments_name_the_argument(kwargs, match):
  with pytest.raises(ValueError, match=match):
    resnet.build_resnet(**{**SMALL, **kwargs})


def test_unknown_keyword_is_refused():
  with pytest.raises(TypeError, match="'resample_alpha'"):
    resnet.build_resnet('resnet50', resample_alpha=0.5)


def test_config_and_keras_file_round_trip(tmp_path):
  model = resnet.build_resnet(**SMALL, stochastic_depth_rate=0.1,
                              kernel_regularizer=keras.regularizers.L2(4e-5))
  clone = resnet.ResNet.from_config(model.get_config())
  assert clone.get_config() == model.get_config()
  path = str(tmp_path / 'resnet.keras')
  model.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, resnet.ResNet)
  images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype('float32')
  expected = model(images, training=False)
  for level, features in loaded(images, training=False).items():
    np.testing.assert_array_equal(np.asarray(features), np.asarray(expected[level]))
