"""Every builder keyword takes effect.

Each table below must list every keyword of its builder (a keyword added
without an entry fails `test_*_table_is_complete`), with a value other than
the default; building with that value must change what the model is or
computes: its weights, outputs (inference and training), moving
statistics, anchors, losses or detections. A stored configuration alone
does not count. `use_sync_bn` changes what is computed only across
replicas: here it must reach every BatchNormalization layer, and
tests/test_training_distributed.py shows what that changes (2 replicas
without it differ from one device, with it they agree).
Refused keywords are in tests/test_bad_inputs_models.py; config keys in
tests/test_config_keys_effect.py.
"""

import inspect

import keras
import numpy as np
import pytest

import spinenet_tf
from spinenet_tf import compat
from spinenet_tf.models import backbone as backbone_lib
from spinenet_tf.models import classifier as classifier_lib
from spinenet_tf.models import retinanet as retinanet_lib

SIZE = 128
SHAPE = (SIZE, SIZE, 3)
# Five output blocks (levels 3..7): the smallest networks the builders take,
# so that the tables build fast.
MINI_SPINENET = [(3, 'bottleneck', (0, 1), True), (4, 'residual', (0, 2), True),
                 (5, 'bottleneck', (2, 3), True), (6, 'residual', (3, 4), True),
                 (7, 'bottleneck', (4, 5), True)]
MINI_MOBILE = [(level, 'mbconv', offsets, True)
               for level, _, offsets, _ in MINI_SPINENET]


def _sums(tensors):
  return [(round(float(np.sum(t)), 3), round(float(np.sum(np.abs(t))), 3))
          for t in keras.tree.flatten(tensors)]


def fingerprint(model):
  """What a user gets, computed: weight shapes and sums, the outputs of a
  fixed input in inference and (seeded) training mode, the moving
  statistics after that training call, regularisation losses, the
  model's name and trainability. Layer configs are left out: a keyword
  that is stored but unused in call() changes nothing here."""
  rng = np.random.default_rng(3)
  images = keras.tree.map_structure(
      lambda spec: rng.normal(size=(2, *spec.shape[1:])).astype('float32'),
      model.input)
  weights = [(tuple(w.shape), round(float(np.sum(w.numpy())), 4))
             for w in model.weights]
  inference = _sums(model(images, training=False))
  keras.utils.set_random_seed(7)
  training = _sums(model(images, training=True))
  return {
      'name': model.name, 'trainable': model.trainable, 'weights': weights,
      'inference': inference, 'training': training,
      'moving': _sums([w.numpy() for w in model.non_trainable_weights]),
      'losses': len(model.losses),
  }


def synchronized_norms(model):
  """Whether every BatchNormalization layer synchronises across replicas
  (what that changes is shown in test_training_distributed)."""
  flags = [layer.synchronized for layer in compat.sublayers(model)
           if isinstance(layer, keras.layers.BatchNormalization)]
  return bool(flags) and all(flags)


def observer(key):
  """What shows a keyword's effect: sync BN on every norm, else the
  fingerprint."""
  return synchronized_norms if key == 'use_sync_bn' else fingerprint


def _build(fn, **kwargs):
  keras.utils.set_random_seed(0)
  return fn(**kwargs)


_DEFAULTS = {}


def assert_effect(fn, base, key, value, observe=None):
  """Building with key=value gives another observation than the base
  (the base's is built once per module); `observe` defaults to
  observer(key)."""
  observe = observe or observer(key)
  cache_key = (fn, repr(sorted(base.items())), observe)
  if cache_key not in _DEFAULTS:
    _DEFAULTS[cache_key] = observe(_build(fn, **base))
  changed = observe(_build(fn, **{**base, key: value}))
  assert changed != _DEFAULTS[cache_key], f'{key}={value!r} changed nothing'


# build_backbone: keyword -> a non-default value.
BACKBONE_VALUES = {
    'model_id_or_specs': 'mobile-49XS',
    'input_shape': (256, 256, 3),
    'min_level': 4,
    'max_level': 6,
    'scaling': 'mobile-49XS',
    'activation': 'swish',
    'use_sync_bn': True,
    'norm_momentum': 0.9,
    'norm_epsilon': 1e-2,
    'stochastic_depth_rate': 0.2,
    'weighted_fusion': True,
    'kernel_initializer': 'he_normal',
    'kernel_regularizer': 'l2',
    'name': 'my_backbone',
    'trainable': False,
    'endpoints_num_filters': 16,
    'filter_size_scale': 0.5,
    'block_repeats': 2,
    'expand_ratio': 3,
    'se_ratio': 0.5,
}
BACKBONE_BASE = dict(model_id_or_specs=MINI_MOBILE, input_shape=SHAPE)
# SpineNet-Mobile maps blocks above max_level to it, so only levels 3..7
# give distinct outputs there: max_level is shown on SpineNet.
SMALL_SPINENET = dict(model_id_or_specs=MINI_SPINENET, input_shape=SHAPE,
                      filter_size_scale=0.25, endpoints_num_filters=8)


def test_backbone_table_is_complete():
  signature = inspect.signature(backbone_lib.build_backbone).parameters
  keywords = {k for k in signature if k != 'kwargs'}
  keywords |= set(backbone_lib.BACKBONE_OPTIONS)
  keywords |= set(backbone_lib.SCALING_OVERRIDES)
  # resample_alpha: SpineNet only (below; refused for Mobile).
  assert keywords == set(BACKBONE_VALUES) | {'resample_alpha'}


@pytest.mark.parametrize('key', sorted(BACKBONE_VALUES))
def test_backbone_keyword_takes_effect(key):
  base = SMALL_SPINENET if key == 'max_level' else BACKBONE_BASE
  assert_effect(backbone_lib.build_backbone, base, key, BACKBONE_VALUES[key])


@pytest.mark.parametrize('key, value', [('resample_alpha', 0.25),
                                        ('block_repeats', 2)])
def test_spinenet_scaling_override_takes_effect(key, value):
  # Mobile has no alpha and the table's base is Mobile: check SpineNet too.
  assert_effect(backbone_lib.build_backbone, SMALL_SPINENET, key, value,
                 observe=lambda m: m.count_params())


CLASSIFIER_VALUES = {
    'num_classes': 5,
    'backbone': MINI_SPINENET,
    'input_shape': (256, 256, 3),
    'level': 6,
    'dropout_rate': 0.5,
    'head': 'spinal',
    'add_head_batch_norm': True,
    'spinal_layer_width': 16,
    'spinal_num_layers': 2,
    'spinal_num_splits': 4,
    'name': 'my_classifier',
}
CLASSIFIER_BASE = dict(num_classes=3, backbone=MINI_MOBILE, input_shape=SHAPE)
SPINAL_KEYS = ('spinal_layer_width', 'spinal_num_layers', 'spinal_num_splits')


def test_classifier_table_is_complete():
  signature = inspect.signature(classifier_lib.build_classifier).parameters
  assert {k for k in signature if k != 'backbone_kwargs'} == set(
      CLASSIFIER_VALUES)


@pytest.mark.parametrize('key', sorted(CLASSIFIER_VALUES))
def test_classifier_keyword_takes_effect(key):
  base = dict(CLASSIFIER_BASE)
  if key in SPINAL_KEYS or key == 'dropout_rate':
    base['head'] = 'spinal'  # dropout: the spinal head's layers say it
  assert_effect(classifier_lib.build_classifier, base, key,
                 CLASSIFIER_VALUES[key])


def test_classifier_forwards_backbone_keywords():
  assert_effect(classifier_lib.build_classifier, CLASSIFIER_BASE,
                 'filter_size_scale', 0.5)


# RetinaNet: keyword -> value; model ones are seen in the fingerprint,
# loss and detection ones in losses / detections on fixed raw outputs.
RETINANET_MODEL_VALUES = {
    'backbone_model_id': MINI_MOBILE,
    'num_classes': 5,
    'input_shape': (256, 256, 3),
    'min_level': 4,
    'max_level': 6,
    'backbone_kwargs': {'filter_size_scale': 0.25,
                        'endpoints_num_filters': 8,
                        'stochastic_depth_rate': 0.2},
    'name': 'my_retinanet',
    'decoder': 'fpn',
    'num_scales': 2,
    'aspect_ratios': (1.0,),
    'num_convs': 2,
    'num_filters': 16,
    'activation': 'relu',
    'use_sync_bn': True,
    'norm_momentum': 0.9,
    'norm_epsilon': 1e-2,
    'kernel_regularizer': 'l2',
    'prior_probability': 0.1,
}
RETINANET_BASE = dict(backbone_model_id=MINI_SPINENET, num_classes=3,
                      input_shape=SHAPE, num_convs=1, num_filters=8,
                      backbone_kwargs={'filter_size_scale': 0.25,
                                       'endpoints_num_filters': 8})
RETINANET_OUTPUT_VALUES = {
    'anchor_size': 5.0,
    'positive_threshold': 0.6,
    'negative_threshold': 0.2,
    'box_coder_weights': (5.0, 5.0, 10.0, 10.0),
    'focal_alpha': 0.5,
    'focal_gamma': 0.0,
    'huber_delta': 0.5,
    'box_loss_weight': 1.0,
    'score_threshold': 0.9,
    'pre_nms_top_k': 10,
    'iou_threshold': 0.1,
    'max_detections': 5,
    'class_agnostic_nms': True,
}
GT_BOXES = np.array([[[20, 20, 60, 60], [70, 10, 120, 50]]], 'float32')
GT_CLASSES = np.array([[1, 2]], 'float32')


def test_retinanet_table_is_complete():
  signature = inspect.signature(retinanet_lib.build_retinanet).parameters
  keywords = {k for k in signature if k != 'options'} | set(
      retinanet_lib.DEFAULTS)
  # decoder_kwargs: needs a decoder (below).
  assert keywords == set(RETINANET_MODEL_VALUES) | set(
      RETINANET_OUTPUT_VALUES) | {'decoder_kwargs'}


def test_retinanet_decoder_kwargs_take_effect():
  assert_effect(retinanet_lib.build_retinanet,
                 {**RETINANET_BASE, 'decoder': 'fpn'}, 'decoder_kwargs',
                 {'num_filters': 4, 'kernel_initializer': 'he_normal'})


def _raw_outputs(model):
  """Fixed random raw outputs of the model's shapes: class scores mostly
  low with a tail up to ~0.9, so that every detection setting bites."""
  rng = np.random.default_rng(1)
  mean = {'class_outputs': -3.0, 'box_outputs': 0.0}
  return {group: {level: rng.normal(mean[group], 1.5, (1,) + tuple(
      t.shape[1:])).astype('float32') for level, t in sorted(levels.items())}
          for group, levels in sorted(model.output.items())}


def losses_and_detections(model):
  outputs = _raw_outputs(model)
  losses = model.detection_losses(outputs, GT_BOXES, GT_CLASSES)
  detections = model.postprocess(outputs)
  return {'anchors': round(float(np.sum(model.anchors)), 2),
          'losses': {k: round(float(v), 5) for k, v in losses.items()},
          'detections': {k: np.asarray(v).round(3).tolist()
                         for k, v in detections.items()}}


@pytest.mark.parametrize('key', sorted(RETINANET_MODEL_VALUES))
def test_retinanet_model_keyword_takes_effect(key):
  assert_effect(retinanet_lib.build_retinanet, RETINANET_BASE, key,
                 RETINANET_MODEL_VALUES[key])


@pytest.fixture(scope='module')
def shared_backbone():
  return backbone_lib.build_backbone(MINI_MOBILE, SHAPE)


@pytest.mark.parametrize('key', sorted(RETINANET_OUTPUT_VALUES))
def test_retinanet_loss_and_detection_keyword_takes_effect(key,
                                                           shared_backbone):
  build = lambda **options: retinanet_lib.RetinaNet(  # noqa: E731
      shared_backbone, 3, num_convs=1, num_filters=8, **options)
  assert_effect(build, {}, key, RETINANET_OUTPUT_VALUES[key],
                 observe=losses_and_detections)


def test_build_retinanet_forwards_loss_and_detection_keywords():
  model = retinanet_lib.build_retinanet(**RETINANET_BASE,
                                        **RETINANET_OUTPUT_VALUES)
  for key, value in RETINANET_OUTPUT_VALUES.items():
    assert model.settings[key] == value, key
