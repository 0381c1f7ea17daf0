"""The export's detection postprocessing (TF kernels, dynamic shapes) gives
the detections of the static, XLA-compilable `postprocess.detect`."""

import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.detection import anchors as anchors_lib
from spinenet_tf.detection import postprocess, tf_postprocess
from tests.test_export import assert_detections_close

SIZE = 256
ANCHORS = anchors_lib.flatten_anchors(anchors_lib.generate_anchors(
    (SIZE, SIZE)))
NUM_CLASSES = 91


def _outputs(logit_mean, seed=0, batch=2):
  """Raw flattened outputs: class logits ~ N(logit_mean, 1.5) (mean -8:
  ~0.1% of the pairs above a 0.05 score; -3: most of them) and box deltas
  that move boxes enough to overlap in many ways."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(logit_mean, 1.5, (batch, len(ANCHORS), NUM_CLASSES))
  deltas = rng.normal(0.0, 0.3, (batch, len(ANCHORS), 4))
  return tf.constant(logits, tf.float32), tf.constant(deltas, tf.float32)


def _both(logits, deltas, **options):
  static = postprocess.detect(logits, deltas, ANCHORS, (SIZE, SIZE),
                              **options)
  fused = tf.function(lambda l, d: tf_postprocess.detect(
      l, d, ANCHORS, (SIZE, SIZE), **options))(logits, deltas)
  return ({k: v.numpy() for k, v in static.items()},
          {k: v.numpy() for k, v in fused.items()})


def _assert_equal_detections(static, fused):
  assert_detections_close(fused, static, score_atol=1e-6, box_atol=1e-4)


@pytest.mark.parametrize('logit_mean', [-9.5, -8.0, -3.0])
@pytest.mark.parametrize('class_agnostic', [False, True])
def test_equals_static_detect(logit_mean, class_agnostic):
  # -9.5: a few candidates per image; -8: a few thousand; -3: most pairs
  # (the path that scores every pair).
  static, fused = _both(*_outputs(logit_mean), class_agnostic=class_agnostic)
  assert static['num_detections'].min() > 0
  _assert_equal_detections(static, fused)


@pytest.mark.parametrize('options', [
    dict(max_detections=7),                  # the cut at D
    dict(pre_nms_top_k=40),                  # the pre-NMS top-k decides
    dict(score_threshold=0.0),               # every pair is a candidate
    dict(score_threshold=0.3, iou_threshold=0.2),
    dict(box_coder_weights=(10.0, 10.0, 5.0, 5.0)),
    dict(class_agnostic=True, pre_nms_top_k=40, max_detections=9),
])
def test_equals_static_detect_with_options(options):
  static, fused = _both(*_outputs(-8.0, seed=1), **options)
  _assert_equal_detections(static, fused)


def test_no_candidates_and_dynamic_batch():
  logits, deltas = _outputs(-30.0, batch=3)
  fn = tf.function(lambda l, d: tf_postprocess.detect(
      l, d, ANCHORS, (SIZE, SIZE)), input_signature=[
          tf.TensorSpec([None, len(ANCHORS), NUM_CLASSES]),
          tf.TensorSpec([None, len(ANCHORS), 4])])
  out = fn(logits, deltas)
  np.testing.assert_array_equal(out['num_detections'], [0, 0, 0])
  np.testing.assert_array_equal(out['classes'], -1)
  assert out['boxes'].shape == (3, 100, 4)
  assert not np.any(out['boxes'].numpy())
  empty = fn(logits[:0], deltas[:0])
  assert empty['boxes'].shape == (0, 100, 4)


def test_one_image_with_detections_beside_one_without():
  logits, deltas = _outputs(-8.0)
  logits = tf.concat([logits[:1], logits[1:] - 30.0], 0)
  static, fused = _both(logits, deltas)
  assert static['num_detections'][1] == 0 < static['num_detections'][0]
  _assert_equal_detections(static, fused)
