"""RetinaNet head and model: parameter counts against Model Garden, outputs,
losses, detection, serialization and a short training run."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import exp_factory
from official.vision.modeling import factory
from official.vision.modeling.heads import dense_prediction_heads

from spinenet_tf.layers.retinanet_head import RetinaNetHead
from spinenet_tf.models.retinanet import RetinaNet, build_retinanet

TINY = dict(backbone_model_id='mobile-49XS', num_classes=4,
            input_shape=(128, 128, 3), num_convs=2, num_filters=32)


@pytest.fixture(scope='module')
def tiny():
  keras.utils.set_random_seed(0)
  return build_retinanet(**TINY)


def _ground_truth():
  boxes = np.zeros((2, 3, 4), np.float32)
  classes = -np.ones((2, 3), np.int32)
  boxes[0, :2], classes[0, :2] = [[16, 16, 64, 56], [70, 60, 120, 124]], [1, 3]
  boxes[1, 0], classes[1, 0] = [30, 40, 90, 80], 2
  return boxes, classes


def test_param_count_equals_model_garden_retinanet_spinenet_49():
  config = exp_factory.get_exp_config('retinanet_spinenet_coco').task.model
  reference = factory.build_retinanet(
      input_specs=tf_keras.layers.InputSpec(shape=[None, 640, 640, 3]),
      model_config=config)
  reference.head(reference.backbone.output)  # builds the head's variables
  expected = sum(int(np.prod(w.shape)) for w in reference.weights)
  ours = build_retinanet('49', num_classes=91, input_shape=(640, 640, 3))
  assert ours.count_params() == expected  # 28,652,567
  assert ours.head.count_params() == sum(
      int(np.prod(w.shape)) for w in reference.head.weights)


def _features(batch=None):
  return {str(l): keras.Input((2**(7 - l), 2**(7 - l), 24), batch_size=batch)
          for l in range(3, 8)}


def test_head_matches_model_garden_parameters_and_init():
  head = RetinaNetHead(3, 7, num_classes=5, num_anchors=9, num_convs=3,
                       num_filters=16)
  classes, boxes = head(_features())
  assert classes['3'].shape == (None, 16, 16, 45)
  assert boxes['7'].shape == (None, 1, 1, 36)
  reference = dense_prediction_heads.RetinaNetHead(3, 7, 5, 9, num_convs=3,
                                                   num_filters=16)
  reference({str(l): tf_keras.Input((2**(7 - l), 2**(7 - l), 24))
             for l in range(3, 8)})
  assert head.count_params() == reference.count_params()
  # One BatchNorm per conv per level and subnet; convs shared.
  norms = [w for w in head.weights if 'norm' in w.path and 'gamma' in w.path]
  assert len(norms) == 2 * 3 * 5
  prior = 1 / (1 + math.exp(-float(head.class_logits.bias.numpy()[0])))
  assert abs(prior - 0.01) < 1e-6
  np.testing.assert_array_equal(head.box_deltas.bias.numpy(), 0)


def test_head_config_round_trip():
  head = RetinaNetHead(3, 7, num_classes=5, num_anchors=9, num_convs=1,
                       num_filters=8, activation='swish',
                       kernel_regularizer=keras.regularizers.L2(4e-5))
  clone = RetinaNetHead.from_config(head.get_config())
  assert clone.get_config() == head.get_config()
  clone(_features(batch=1))
  assert len(clone.losses) == 2 * (1 + 1)  # two convs per subnet


def test_outputs_and_detections(tiny):
  images = np.random.default_rng(0).normal(size=(2, 128, 128, 3))
  outputs = tiny(images, training=False)
  assert sorted(outputs) == ['box_outputs', 'class_outputs']
  assert outputs['class_outputs']['3'].shape == (2, 16, 16, 36)
  assert outputs['box_outputs']['7'].shape == (2, 1, 1, 36)
  assert tiny.anchors.shape == (341 * 9, 4)
  detections = tiny.detect(images)
  assert detections['boxes'].shape == (2, 100, 4)
  assert detections['scores'].shape == (2, 100)
  assert detections['classes'].shape == (2, 100)
  assert detections['num_detections'].shape == (2,)
  # Untrained logits sit at the 0.01 prior, below the 0.05 score threshold.
  np.testing.assert_array_equal(detections['num_detections'], [0, 0])
  predicted = tiny.predict_step((images,))
  np.testing.assert_array_equal(predicted['scores'], detections['scores'])


def test_losses_with_padding(tiny):
  images = np.zeros((2, 128, 128, 3), np.float32)
  boxes, classes = _ground_truth()
  outputs = tiny(images, training=False)
  result = tiny.detection_losses(outputs, boxes, classes)
  assert sorted(result) == ['box_loss', 'class_loss', 'num_positives',
                            'total_loss']
  assert float(result['num_positives']) > 3
  np.testing.assert_allclose(
      result['total_loss'], result['class_loss'] + 50 * result['box_loss'],
      rtol=1e-6)
  # More padding changes nothing.
  more_boxes = np.concatenate([boxes, np.zeros((2, 4, 4), np.float32)], 1)
  more_classes = np.concatenate([classes, -np.ones((2, 4), np.int32)], 1)
  padded = tiny.detection_losses(outputs, more_boxes, more_classes)
  np.testing.assert_allclose(padded['total_loss'], result['total_loss'],
                             rtol=1e-6)
  fit_loss = tiny.compute_loss(y={'boxes': boxes, 'classes': classes},
                               y_pred=outputs)
  np.testing.assert_allclose(fit_loss, result['total_loss'], rtol=1e-6)


def test_serialization_round_trip(tiny, tmp_path):
  path = str(tmp_path / 'retinanet.keras')
  tiny.save(path)
  loaded = keras.saving.load_model(path)
  assert isinstance(loaded, RetinaNet)
  images = np.random.default_rng(1).normal(size=(1, 128, 128, 3))
  expected = tiny(images, training=False)['class_outputs']['4']
  np.testing.assert_allclose(loaded(images, training=False)['class_outputs'][
      '4'], expected, atol=1e-5)
  np.testing.assert_array_equal(loaded.anchors, tiny.anchors)


def test_rejects_bad_options():
  inputs = keras.Input((None, None, 3))
  backbone = keras.Model(inputs, {'3': keras.layers.Conv2D(4, 1)(inputs)})
  with pytest.raises(ValueError, match='fixed input size'):
    RetinaNet(backbone, 4)
  with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['unknown_option'\]"):
    build_retinanet(unknown_option=1, **TINY)


def test_a_few_steps_reduce_the_loss():
  keras.utils.set_random_seed(1)
  model = build_retinanet(**TINY)
  image = np.zeros((1, 128, 128, 3), np.float32)
  image[0, 20:60, 30:90] = 1.0
  image[0, 80:120, 70:110, 0] = 1.0
  y = {'boxes': np.array([[[20, 30, 60, 90], [80, 70, 120, 110]]], np.float32),
       'classes': np.array([[1, 2]], np.int32)}
  # Eager: tracing the train step would cost more than the steps.
  model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
  history = model.fit(image, y, batch_size=1, epochs=6, verbose=0)
  losses = history.history['loss']
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.8 * losses[0], losses


def test_detect_maps_boxes_to_original_pixels_with_image_info():
  model = build_retinanet('mobile-49XS', num_classes=3, input_shape=(128, 128, 3),
                          num_filters=16, num_convs=1, score_threshold=0.001)
  images = np.random.default_rng(0).normal(size=(2, 128, 128, 3)).astype('float32')
  plain = model.detect(images)
  assert np.all(np.asarray(plain['num_detections']) > 0)
  assert np.abs(np.asarray(plain['boxes'])).max() > 1.0
  info = np.array([[[256, 200], [128, 100], [0.5, 0.5], [0, 0]]] * 2, 'float32')
  scaled = model.detect(images, info)
  np.testing.assert_allclose(np.asarray(scaled['boxes']),
                             np.asarray(plain['boxes']) * 2.0, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(scaled['scores']),
                                np.asarray(plain['scores']))
  eval_batches = tf.data.Dataset.from_tensors((images, {'image_info': info}))
  predicted = model.predict(eval_batches, verbose=0)
  np.testing.assert_allclose(predicted['boxes'], np.asarray(scaled['boxes']),
                             rtol=1e-4, atol=1e-3)
