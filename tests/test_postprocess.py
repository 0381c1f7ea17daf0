"""NMS on hand-made boxes, XLA compilation, and detection against Model
Garden's MultilevelDetectionGenerator."""

import numpy as np
import pytest
import tensorflow as tf
from official.vision.modeling.layers import detection_generator

from spinenet_tf.detection import anchors, box_coder, postprocess

IMAGE = (64, 64)
NUM_CLASSES = 3


def _nms(boxes, scores, classes, **kwargs):
  return postprocess.non_max_suppression(
      np.array([boxes], np.float32), np.array([scores], np.float32),
      np.array([classes], np.int32), **kwargs)


# Boxes 0 and 1 overlap (IoU 0.68); box 2 is apart.
BOXES = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]


def test_overlapping_same_class_suppressed():
  out = _nms(BOXES, [0.9, 0.8, 0.7], [1, 1, 1], max_detections=5)
  assert int(out['num_detections'][0]) == 2
  np.testing.assert_allclose(out['scores'][0], [0.9, 0.7, 0, 0, 0])
  np.testing.assert_array_equal(out['classes'][0], [1, 1, -1, -1, -1])
  np.testing.assert_array_equal(out['boxes'][0, :2], [BOXES[0], BOXES[2]])
  np.testing.assert_array_equal(out['boxes'][0, 2:], 0)


def test_different_classes_kept_unless_class_agnostic():
  per_class = _nms(BOXES, [0.9, 0.8, 0.7], [1, 2, 1], max_detections=4)
  np.testing.assert_allclose(per_class['scores'][0], [0.9, 0.8, 0.7, 0])
  np.testing.assert_array_equal(per_class['classes'][0], [1, 2, 1, -1])
  agnostic = _nms(BOXES, [0.9, 0.8, 0.7], [1, 2, 1], max_detections=4,
                  class_agnostic=True)
  np.testing.assert_array_equal(agnostic['classes'][0], [1, 1, -1, -1])


def test_score_threshold_and_max_detections():
  out = _nms(BOXES, [0.9, 0.8, 0.04], [1, 2, 1], max_detections=4)
  assert int(out['num_detections'][0]) == 2  # 0.04 < 0.05
  capped = _nms(BOXES, [0.9, 0.8, 0.7], [1, 2, 3], max_detections=2)
  np.testing.assert_allclose(capped['scores'][0], [0.9, 0.8])
  assert int(capped['num_detections'][0]) == 2


def test_iou_threshold_is_strict():
  # IoU([0,0,10,10], [0,0,10,20]) = 0.5 exactly: kept at threshold 0.5.
  out = _nms([[0, 0, 10, 10], [0, 0, 10, 20]], [0.9, 0.8], [1, 1],
             max_detections=3)
  assert int(out['num_detections'][0]) == 2
  out = _nms([[0, 0, 10, 10], [0, 0, 10, 20]], [0.9, 0.8], [1, 1],
             max_detections=3, iou_threshold=0.49)
  assert int(out['num_detections'][0]) == 1


def test_batch_images_are_independent():
  boxes = np.array([BOXES, BOXES], np.float32)
  scores = np.array([[0.9, 0.8, 0.7], [0.01, 0.02, 0.03]], np.float32)
  out = postprocess.non_max_suppression(boxes, scores, np.ones((2, 3), 'int32'),
                                        max_detections=3)
  np.testing.assert_array_equal(out['num_detections'], [2, 0])
  np.testing.assert_array_equal(out['classes'][1], [-1, -1, -1])


def _random_outputs(seed, batch=2):
  rng = np.random.default_rng(seed)
  multilevel = anchors.generate_anchors(IMAGE)
  def make(width, scale, shift):
    return {k: tf.constant(rng.normal(shift, scale, (batch,) + v.shape[:2]
                                      + (9 * width,)), tf.float32)
            for k, v in multilevel.items()}
  return multilevel, make(NUM_CLASSES, 2.0, -3.0), make(4, 0.3, 0.0)


def _ours(multilevel, class_outputs, box_outputs, **kwargs):
  return postprocess.detect(
      anchors.flatten_levels(class_outputs, NUM_CLASSES),
      anchors.flatten_levels(box_outputs, 4),
      anchors.flatten_anchors(multilevel), IMAGE, **kwargs)


@pytest.mark.parametrize('class_agnostic', [False, True])
def test_detect_matches_model_garden(class_agnostic):
  multilevel, class_outputs, box_outputs = _random_outputs(3)
  batch = 2
  generator = detection_generator.MultilevelDetectionGenerator(
      nms_version='v2', pre_nms_top_k=100000, max_num_detections=50,
      use_class_agnostic_nms=class_agnostic)
  theirs = generator(box_outputs, class_outputs,
                     {k: tf.tile(v[None], [batch, 1, 1, 1])
                      for k, v in multilevel.items()},
                     tf.constant([IMAGE] * batch, tf.float32))
  ours = _ours(multilevel, class_outputs, box_outputs, max_detections=50,
               pre_nms_top_k=100000, class_agnostic=class_agnostic)
  np.testing.assert_array_equal(ours['num_detections'],
                                theirs['num_detections'])
  for i in range(batch):
    n = int(ours['num_detections'][i])
    assert n > 10
    np.testing.assert_allclose(ours['scores'][i, :n],
                               theirs['detection_scores'][i, :n], rtol=1e-5)
    np.testing.assert_array_equal(ours['classes'][i, :n],
                                  theirs['detection_classes'][i, :n])
    np.testing.assert_allclose(ours['boxes'][i, :n],
                               theirs['detection_boxes'][i, :n], atol=1e-3)


def test_detect_compiles_with_xla_and_keeps_static_shapes():
  multilevel, class_outputs, box_outputs = _random_outputs(4)
  eager = _ours(multilevel, class_outputs, box_outputs, pre_nms_top_k=1000)
  compiled = tf.function(lambda c, b: _ours(multilevel, c, b,
                                            pre_nms_top_k=1000),
                         jit_compile=True)(class_outputs, box_outputs)
  assert compiled['boxes'].shape == (2, 100, 4)
  assert compiled['scores'].shape == (2, 100)
  assert compiled['classes'].shape == (2, 100)
  assert compiled['num_detections'].shape == (2,)
  for key in eager:
    np.testing.assert_allclose(compiled[key], eager[key], atol=1e-4)
  # Boxes are clipped to the image; classes exclude background slot 0.
  n = int(eager['num_detections'][0])
  assert np.all(eager['boxes'][0, :n] >= 0)
  assert np.all(eager['boxes'][0, :n] <= 64)
  assert np.all(eager['classes'][0, :n] >= 1)


def test_pre_nms_top_k_limits_candidates():
  multilevel = anchors.generate_anchors(IMAGE)
  flat = anchors.flatten_anchors(multilevel)
  logits = np.full((1, len(flat), NUM_CLASSES), -10.0, np.float32)
  logits[0, :, 1] = np.linspace(3.0, 0.0, len(flat))  # anchor 0 scores best
  deltas = np.zeros((1, len(flat), 4), np.float32)
  out = postprocess.detect(logits, deltas, flat, IMAGE, pre_nms_top_k=1,
                           max_detections=5)
  assert int(out['num_detections'][0]) == 1
  np.testing.assert_allclose(out['boxes'][0, 0],
                             box_coder.clip_boxes(flat[:1], IMAGE)[0])
