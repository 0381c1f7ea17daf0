"""SpineNet as a KerasHub FeaturePyramidBackbone: in RetinaNetObjectDetector,
trained with fit(), and through presets (Model Garden weights included)."""
import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import spinenet_tf
from spinenet_tf import hub
from spinenet_tf.data import synthetic_shapes
from spinenet_tf.data.detection_input import build_detection_dataset
from spinenet_tf.export.model_garden_checkpoint import convert_checkpoint
from benchmarks.model_garden import (
    build_reference, randomize_batch_norm, save_reference_checkpoint)

SIZE = 128
TINY = dict(filter_size_scale=0.25, endpoints_num_filters=32)


def _images(count=2, seed=1):
  return np.random.default_rng(seed).uniform(
      0, 1, (count, SIZE, SIZE, 3)).astype('float32')


def _max_difference(a, b):
  return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max())
             for k in a)


def test_backbone_is_a_feature_pyramid_of_our_spinenet():
  backbone = hub.SpineNetBackbone('49S', image_shape=(SIZE, SIZE, 3), **TINY)
  assert isinstance(backbone, keras_hub.models.FeaturePyramidBackbone)
  assert {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()} == {
      f'P{level}': (None, SIZE // 2**level, SIZE // 2**level, 32)
      for level in range(3, 8)}
  ours = spinenet_tf.build_backbone('49S', (SIZE, SIZE, 3), **TINY)
  wrapped = hub.SpineNetBackbone.from_spinenet(ours)
  assert wrapped.count_params() == ours.count_params()
  expected = ours(_images(), training=False)
  got = wrapped(_images(), training=False)
  assert _max_difference({f'P{k}': v for k, v in expected.items()}, got) == 0


def test_backbone_refuses_unknown_options_and_other_models():
  with pytest.raises(TypeError, match='filter_scale'):
    hub.SpineNetBackbone('49S', filter_scale=0.5)
  with pytest.raises(TypeError, match='ResNet'):
    hub.SpineNetBackbone.from_spinenet(spinenet_tf.build_resnet('resnet50'))


def test_dtype_reaches_every_layer_and_the_global_policy_is_restored():
  before = keras.config.dtype_policy().name
  backbone = hub.SpineNetBackbone('49S', image_shape=(SIZE, SIZE, 3),
                                  dtype='mixed_bfloat16', **TINY)
  assert keras.config.dtype_policy().name == before
  policies = {layer.dtype_policy.name
              for layer in backbone.spinenet._flatten_layers()}
  assert policies == {'mixed_bfloat16'}
  assert backbone(_images())['P3'].dtype == 'bfloat16'


def _hub_batches(data_dir, count, batch_size):
  """Our synthetic shapes as KerasHub's detector reads them: boxes yxyx in
  pixels, labels 0..2 (our classes 1..3), -1 padding."""
  dataset = build_detection_dataset(
      'synthetic', False, SIZE, batch_size, data_dir=data_dir, split='train',
      max_num_instances=8)

  def to_hub(images, labels):
    classes = labels['classes']
    return images, {'boxes': labels['boxes'],
                    'labels': tf.where(classes > 0, classes - 1, -1)}
  return dataset.take(count // batch_size).map(to_hub).cache().repeat()


def test_retinanet_object_detector_fits_and_predicts_on_spinenet(tmp_path):
  synthetic_shapes.write_synthetic_dataset(
      str(tmp_path), num_train=16, num_val=4, image_size=SIZE, seed=0)
  data = _hub_batches(str(tmp_path), 16, 4)
  keras.utils.set_random_seed(0)
  backbone = hub.SpineNetBackbone('49S', image_shape=(SIZE, SIZE, 3),
                                  activation='swish', **TINY)
  detector = keras_hub.models.RetinaNetObjectDetector(
      backbone=backbone, num_classes=synthetic_shapes.NUM_CLASSES - 1,
      anchor_generator=hub.spinenet_anchors(backbone))
  assert detector.anchor_generator.anchor_size == hub.ANCHOR_SIZE
  detector.compile(optimizer=keras.optimizers.Adam(1e-3))
  history = detector.fit(data, epochs=4, steps_per_epoch=4, verbose=0)
  losses = history.history['loss']
  assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses

  detections = detector.predict(_images(), verbose=0)
  assert detections['boxes'].shape == (2, 100, 4)
  assert detections['labels'].shape == (2, 100)


def test_model_garden_weights_become_a_preset_that_loads_back(tmp_path):
  reference = build_reference('49S', SIZE)
  randomize_batch_norm(reference)
  checkpoint = save_reference_checkpoint(reference, tmp_path / 'mg')
  ours = spinenet_tf.build_backbone('49S', (SIZE, SIZE, 3))
  convert_checkpoint(checkpoint, ours)
  preset = str(tmp_path / 'preset')
  hub.SpineNetBackbone.from_spinenet(ours).save_to_preset(preset)

  loaded = keras_hub.models.Backbone.from_preset(preset)
  assert isinstance(loaded, hub.SpineNetBackbone)
  assert loaded.image_shape == (SIZE, SIZE, 3)
  expected = reference(_images(), training=False)
  got = loaded(_images(), training=False)
  assert _max_difference({f'P{k}': v for k, v in expected.items()},
                         got) < 1e-4


def test_detector_preset_loads_back_as_spinenet_detector(tmp_path):
  backbone = hub.SpineNetBackbone('49S', image_shape=(SIZE, SIZE, 3), **TINY)
  detector = hub.SpineNetObjectDetector(backbone=backbone, num_classes=3)
  assert detector.anchor_generator.anchor_size == hub.ANCHOR_SIZE
  detector.save_to_preset(str(tmp_path))

  loaded = keras_hub.models.RetinaNetObjectDetector.from_preset(str(tmp_path))
  assert isinstance(loaded, hub.SpineNetObjectDetector)
  assert loaded.anchor_generator.anchor_size == hub.ANCHOR_SIZE
  assert _max_difference(detector(_images()), loaded(_images())) == 0
