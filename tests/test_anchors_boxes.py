"""Anchors, box coding and target assignment against Model Garden."""

import numpy as np
import pytest
import tensorflow as tf
from official.vision.ops import anchor as mg_anchor
from official.vision.ops import box_ops as mg_box_ops
from official.vision.utils.object_detection import box_list
from official.vision.utils.object_detection import faster_rcnn_box_coder

from spinenet_tf.detection import anchors, assigner, box_coder

GT_BOXES = np.array([[10., 12., 60., 50.], [64., 64., 126., 120.],
                     [30., 80., 46., 96.], [0., 0., 5., 4.]], np.float32)
GT_CLASSES = np.array([1, 3, 2, 2], np.int32)


def _mg_anchors(image_size, anchor_size=3.0):
  return mg_anchor.Anchor(3, 7, 3, [0.5, 1.0, 2.0], anchor_size,
                          image_size).multilevel_boxes


def test_anchors_identical_to_model_garden_256():
  ours = anchors.generate_anchors((256, 256))
  theirs = _mg_anchors([256, 256])
  assert list(ours) == list(theirs)
  for level in ours:
    np.testing.assert_array_equal(ours[level], theirs[level].numpy())


def test_anchors_match_model_garden_uneven_size():
  ours = anchors.generate_anchors((200, 300), anchor_size=4.0)
  theirs = _mg_anchors([200, 300], anchor_size=4.0)
  for level in ours:
    np.testing.assert_allclose(ours[level], theirs[level].numpy(), atol=1e-4)


def test_anchor_layout():
  multilevel = anchors.generate_anchors((128, 128), 3, 7, 3, (0.5, 1.0, 2.0))
  assert anchors.anchors_per_location(3, (0.5, 1.0, 2.0)) == 9
  assert multilevel['3'].shape == (16, 16, 36)
  assert multilevel['7'].shape == (1, 1, 36)
  flat = anchors.flatten_anchors(multilevel)
  assert flat.shape == ((256 + 64 + 16 + 4 + 1) * 9, 4)
  # First anchor: level 3, cell (0, 0), scale 0, ratio 0.5 (w / h).
  side = 3 * 8
  h, w = side * 0.5**-0.5, side * 0.5**0.5
  np.testing.assert_allclose(flat[0], [4 - h / 2, 4 - w / 2, 4 + h / 2,
                                       4 + w / 2], rtol=1e-6)
  outputs = {k: tf.reshape(tf.constant(v), (1,) + v.shape)
             for k, v in multilevel.items()}
  np.testing.assert_array_equal(anchors.flatten_levels(outputs, 4)[0], flat)


@pytest.mark.parametrize('weights', [None, (10., 10., 5., 5.)])
def test_encode_matches_model_garden_and_round_trips(weights):
  rng = np.random.default_rng(0)
  anchor_boxes = anchors.flatten_anchors(anchors.generate_anchors((128, 128)))
  yx = rng.uniform(0, 100, (len(anchor_boxes), 2)).astype(np.float32)
  boxes = np.concatenate([yx, yx + rng.uniform(2, 60, yx.shape)], -1)
  boxes = boxes.astype(np.float32)
  deltas = box_coder.encode_boxes(boxes, anchor_boxes, weights)
  coder = faster_rcnn_box_coder.FasterRcnnBoxCoder(weights and list(weights))
  expected = coder.encode(box_list.BoxList(tf.constant(boxes)),
                          box_list.BoxList(tf.constant(anchor_boxes)))
  np.testing.assert_allclose(deltas, expected, rtol=1e-5, atol=1e-5)
  decoded = box_coder.decode_boxes(deltas, tf.constant(anchor_boxes), weights)
  np.testing.assert_allclose(decoded, boxes, atol=1e-3)
  np.testing.assert_allclose(
      decoded, mg_box_ops.decode_boxes(deltas, anchor_boxes, weights),
      atol=1e-4)


def test_decode_caps_log_sizes():
  anchor = tf.constant([[0., 0., 10., 10.]])
  decoded = box_coder.decode_boxes(tf.constant([[0., 0., 50., 50.]]), anchor)
  assert np.all(np.isfinite(decoded))
  np.testing.assert_allclose(decoded[0, 2] - decoded[0, 0], 10 * 1000 / 16,
                             rtol=1e-5)


def test_iou_and_clip():
  a = tf.constant([[0., 0., 10., 10.], [0., 0., 0., 0.]])
  b = tf.constant([[5., 5., 15., 15.], [0., 0., 10., 10.], [20., 20., 30.,
                                                           30.]])
  np.testing.assert_allclose(box_coder.pairwise_iou(a, b),
                             [[25 / 175, 1, 0], [0, 0, 0]], rtol=1e-6)
  clipped = box_coder.clip_boxes(tf.constant([[-5., 3., 140., 90.]]),
                                 (128, 64))
  np.testing.assert_array_equal(clipped, [[0., 3., 128., 64.]])


def _flat(multilevel, dim):
  return np.concatenate([multilevel[k].numpy().reshape(-1, dim)
                         for k in sorted(multilevel, key=int)])


def _mg_targets(image_size, boxes, classes, unmatched_threshold):
  labeler = mg_anchor.AnchorLabeler(0.5, unmatched_threshold)
  cls, box, _, cls_w, box_w = labeler.label_anchors(
      _mg_anchors(list(image_size)), tf.constant(boxes),
      tf.constant(classes[:, None]))
  return _flat(cls, 1)[:, 0], _flat(box, 4), cls_w.numpy(), box_w.numpy()


@pytest.mark.parametrize('negative_threshold', [0.4, 0.5])
def test_targets_match_model_garden_labeler(negative_threshold):
  anchor_boxes = anchors.flatten_anchors(anchors.generate_anchors((128, 128)))
  targets = assigner.assign_targets(anchor_boxes, GT_BOXES[None],
                                    GT_CLASSES[None],
                                    negative_threshold=negative_threshold)
  cls, box, cls_w, box_w = _mg_targets((128, 128), GT_BOXES, GT_CLASSES,
                                       negative_threshold)
  np.testing.assert_array_equal(targets['class_targets'][0], cls)
  np.testing.assert_array_equal(targets['class_weights'][0], cls_w)
  np.testing.assert_array_equal(targets['box_weights'][0], box_w)
  positive = box_w > 0
  np.testing.assert_allclose(targets['box_targets'][0].numpy()[positive],
                             box[positive], rtol=1e-5, atol=1e-5)
  assert np.all(targets['box_targets'][0].numpy()[~positive] == 0)
  # The tiny box at the corner overlaps no anchor by 0.5: it is force-matched.
  assert int(np.sum(positive)) > 0
  if negative_threshold < 0.5:
    assert np.sum(cls_w == 0) > 0  # an ignore band exists


def test_force_match_each_box():
  anchor_boxes = np.array([[0., 0., 10., 10.], [0., 0., 40., 40.]],
                          np.float32)
  gt = np.array([[[0., 0., 4., 4.]]], np.float32)  # IoU 0.16 with anchor 0
  targets = assigner.assign_targets(anchor_boxes, gt, np.array([[5]]))
  np.testing.assert_array_equal(targets['class_targets'], [[5, -1]])
  np.testing.assert_array_equal(targets['box_weights'], [[1, 0]])
  off = assigner.assign_targets(anchor_boxes, gt, np.array([[5]]),
                                force_match=False)
  np.testing.assert_array_equal(off['class_targets'], [[-1, -1]])


def test_padding_is_ignored_and_batching_is_independent():
  anchor_boxes = anchors.flatten_anchors(anchors.generate_anchors((128, 128)))
  padded_boxes = np.zeros((2, 6, 4), np.float32)
  padded_classes = -np.ones((2, 6), np.int32)
  padded_boxes[0, :4], padded_classes[0, :4] = GT_BOXES, GT_CLASSES
  padded_boxes[0, 4] = [1., 1., 1., 9.]  # empty box with a class
  padded_classes[0, 4] = 1
  padded_boxes[0, 5] = [10., 12., 60., 50.]  # a real box marked padding
  padded_boxes[1, 0], padded_classes[1, 0] = GT_BOXES[1], GT_CLASSES[1]

  compute = tf.function(assigner.assign_targets, jit_compile=True)
  batched = compute(anchor_boxes, padded_boxes, padded_classes)
  alone = [(GT_BOXES, GT_CLASSES), (GT_BOXES[1:2], GT_CLASSES[1:2])]
  for i, (boxes, classes) in enumerate(alone):
    single = assigner.assign_targets(anchor_boxes, boxes[None], classes[None])
    for key in single:
      np.testing.assert_allclose(batched[key][i], single[key][0], atol=1e-5)

  empty = assigner.assign_targets(anchor_boxes, np.zeros((1, 3, 4)),
                                  -np.ones((1, 3)))
  assert np.all(empty['class_targets'] == -1)
  assert np.all(empty['class_weights'] == 1)
  assert np.all(empty['box_weights'] == 0)
