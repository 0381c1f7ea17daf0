"""FPN decoder and RetinaNet-ResNet-FPN (the paper's baseline): parameter
counts equal Model Garden's, every keyword takes effect, bad input is
refused naming the argument, configs round-trip."""
import keras
import numpy as np
import pytest

from spinenet_tf.layers.fpn import FPN, FPN_OPTIONS
from spinenet_tf.models import resnet
from spinenet_tf.models.retinanet import build_retinanet
from benchmarks.model_garden import (
    build_reference_resnet, build_reference_retinanet_fpn)
from tests.test_options_effect import assert_effect

# tf-models-official 2.20.0, `retinanet_resnetfpn_coco` at 640 with 91
# classes: backbone 23,561,152 + FPN 3,873,792 + head 6,732,375.
PUBLISHED = {'total': 34_167_319, 'fpn': 3_873_792, 'head': 6_732_375}


def test_fpn_parameter_count_equals_model_garden():
  from official.vision.modeling.decoders import fpn as mg_fpn
  reference_backbone = build_reference_resnet(50, 256)
  reference = mg_fpn.FPN(input_specs=reference_backbone.output_specs,
                         min_level=3, max_level=7)
  ours = FPN(resnet.build_resnet('resnet50', (256, 256, 3)).output_specs)
  assert ours.count_params() == reference.count_params() == PUBLISHED['fpn']
  assert len(ours.weights) == len(reference.weights)


def test_retinanet_resnet50_fpn_parameter_count_equals_model_garden():
  ours = build_retinanet('resnet50', 91, (640, 640, 3), activation='relu')
  reference = build_reference_retinanet_fpn(50, 640, 91)
  assert ours.count_params() == reference.count_params() == PUBLISHED['total']
  assert ours.decoder.count_params() == PUBLISHED['fpn']
  assert ours.head.count_params() == PUBLISHED['head']
  assert len(ours.weights) == len(reference.weights)


@pytest.mark.parametrize('model_id', ['resnet101', 'resnet152'])
def test_deeper_resnets_build_by_name(model_id):
  model = build_retinanet(model_id, 3, (128, 128, 3), num_filters=8,
                          backbone_kwargs={'depth_multiplier': 0.0625},
                          decoder_kwargs={'num_filters': 8})
  assert model.backbone.model_id == model_id
  assert sorted(model.output['class_outputs']) == ['3', '4', '5', '6', '7']


def _tiny_specs(size=64):
  return resnet.build_resnet('resnet50', (size, size, 3),
                             depth_multiplier=0.0625).output_specs


def test_levels_shapes_and_the_coarser_levels():
  decoder = FPN(_tiny_specs(), min_level=3, max_level=7, num_filters=8)
  assert decoder.output_specs == {
      '3': (None, 8, 8, 8), '4': (None, 4, 4, 8), '5': (None, 2, 2, 8),
      '6': (None, 1, 1, 8), '7': (None, 1, 1, 8)}
  # Level 6 reads level 5's output conv before its BN; 7 after an activation.
  assert decoder.get_layer(FPN.coarser_name(6)).input.name == decoder.get_layer(
      FPN.output_name(5)).output.name
  assert 'act_7' in [layer.name for layer in decoder.layers]
  assert 'act_6' not in [layer.name for layer in decoder.layers]


TINY = dict(input_specs=_tiny_specs(), num_filters=8)
# FPN keyword -> a non-default value.
FPN_VALUES = {
    'input_specs': _tiny_specs(128),
    'min_level': 4,
    'max_level': 6,
    'num_filters': 16,
    'activation': 'swish',
    'use_sync_bn': True,
    'norm_momentum': 0.9,
    'norm_epsilon': 1e-2,
    'kernel_initializer': 'he_normal',
    'kernel_regularizer': 'l2',
    'name': 'my_fpn',
    'trainable': False,
}


def test_fpn_table_is_complete():
  assert set(FPN_VALUES) == {'input_specs', 'min_level', 'max_level',
                             *FPN_OPTIONS}


@pytest.mark.parametrize('key', sorted(FPN_VALUES))
def test_fpn_keyword_takes_effect(key):
  base = TINY
  if key == 'activation':  # seen only before the second stride-2 conv
    base = {**TINY, 'max_level': 7}
  assert_effect(FPN, base, key, FPN_VALUES[key])


@pytest.mark.parametrize('kwargs, match', [
    (dict(input_specs={}), 'input_specs must be'),
    (dict(input_specs={'3': (None, 8, 8, 4), '5': (None, 2, 2, 4)}),
     r'lacks levels \[4\]'),
    (dict(min_level=1), 'min_level must be'),
    (dict(min_level=6), 'min_level must be <= the highest input level 5'),
    (dict(max_level=4), 'max_level must be'),
    (dict(num_filters=0), 'num_filters must be'),
    (dict(activation='gelu'), 'activation must be'),
    (dict(norm_momentum=1.0), 'norm_momentum must be'),
])
def test_bad_fpn_arguments_name_the_argument(kwargs, match):
  with pytest.raises(ValueError, match=match):
    FPN(**{**TINY, **kwargs})


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(decoder='bifpn'), ValueError, 'decoder must be None or one of'),
    (dict(decoder_kwargs={'num_filters': 8}, backbone_model_id=[
        (3, 'bottleneck', (0, 1), True), (4, 'residual', (0, 2), True),
        (5, 'bottleneck', (2, 3), True), (6, 'residual', (3, 4), True),
        (7, 'bottleneck', (4, 5), True)], backbone_kwargs=None), ValueError,
     'need a decoder'),
    (dict(decoder_kwargs={'num_layers': 2}), TypeError, "'num_layers'"),
    (dict(decoder_kwargs=[8]), ValueError, 'decoder_kwargs must be a mapping'),
])
def test_bad_decoder_arguments_are_refused(kwargs, error, match):
  base = dict(backbone_model_id='resnet50', num_classes=3,
              input_shape=(128, 128, 3), num_filters=8,
              backbone_kwargs={'depth_multiplier': 0.0625})
  with pytest.raises(error, match=match):
    build_retinanet(**{**base, **kwargs})


def test_retinanet_on_resnet_without_decoder_names_the_levels():
  from spinenet_tf.models.retinanet import RetinaNet
  backbone = resnet.build_resnet('resnet50', (128, 128, 3),
                                 depth_multiplier=0.0625)
  with pytest.raises(ValueError, match='needs decoder=FPN'):
    RetinaNet(backbone, 3, num_filters=8)


def test_retinanet_fpn_keras_file_round_trip(tmp_path):
  model = build_retinanet('resnet50', 3, (64, 64, 3), num_filters=8,
                          backbone_kwargs={'depth_multiplier': 0.0625},
                          decoder_kwargs={'num_filters': 8},
                          kernel_regularizer=keras.regularizers.L2(4e-5))
  path = str(tmp_path / 'retinanet.keras')
  model.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded.decoder, FPN)
  assert loaded.decoder.get_config() == model.decoder.get_config()
  images = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype('float32')
  expected = keras.tree.flatten(model(images, training=False))
  got = keras.tree.flatten(loaded(images, training=False))
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_folded_retinanet_fpn_matches_unfolded():
  from spinenet_tf.export.fold_batchnorm import fold_batchnorm, max_abs_difference
  from benchmarks.model_garden import randomize_batch_norm
  model = build_retinanet('resnet50', 3, (64, 64, 3), num_filters=8,
                          backbone_kwargs={'depth_multiplier': 0.0625},
                          decoder_kwargs={'num_filters': 8})
  randomize_batch_norm(model)
  folded = fold_batchnorm(model)
  norms = [layer.name for layer in folded._flatten_layers()  # pylint: disable=protected-access
           if isinstance(layer, keras.layers.BatchNormalization)]
  # The backbone's and head's BNs are folded; the FPN's follow biased convs
  # whose pre-BN output level 6 also reads: they stay.
  assert sorted(norms) == [FPN.norm_name(level) for level in range(3, 8)]
  images = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype('float32')
  scale = max(float(np.abs(t).max()) for t in keras.tree.flatten(
      model(images, training=False)))
  assert max_abs_difference(model, folded, images) <= 1e-5 * max(scale, 1)
