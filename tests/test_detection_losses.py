"""Focal and Huber losses; the RetinaNet loss against Model Garden's task."""

import math

import numpy as np
import tensorflow as tf
from official.core import exp_factory
from official.vision.losses import focal_loss as mg_focal_loss
from official.vision.ops import anchor as mg_anchor
from official.vision.tasks import retinanet as mg_retinanet

from spinenet_tf.detection import anchors, assigner, losses

IMAGE = (128, 128)
NUM_CLASSES = 4


def _sigmoid(x):
  return 1 / (1 + math.exp(-x))


def test_focal_loss_hand_computed():
  logits = np.array([[0.5, -1.0]], np.float32)
  labels = np.array([[1.0, 0.0]], np.float32)
  p = _sigmoid(0.5)
  positive = 0.25 * (1 - p)**1.5 * -math.log(p)
  q = _sigmoid(-1.0)
  negative = 0.75 * q**1.5 * -math.log(1 - q)
  np.testing.assert_allclose(losses.sigmoid_focal_loss(labels, logits),
                             [[positive, negative]], rtol=1e-5)
  # gamma 0, alpha 0.5 is half the binary cross-entropy.
  np.testing.assert_allclose(
      losses.sigmoid_focal_loss(labels, logits, alpha=0.5, gamma=0.0),
      [[-0.5 * math.log(p), -0.5 * math.log(1 - q)]], rtol=1e-5)


def test_focal_loss_matches_model_garden():
  rng = np.random.default_rng(1)
  logits = rng.normal(0, 4, (2, 50, 6)).astype(np.float32)
  labels = (rng.uniform(size=logits.shape) < 0.2).astype(np.float32)
  expected = mg_focal_loss.FocalLoss(0.25, 1.5).call(labels, logits)
  np.testing.assert_allclose(losses.sigmoid_focal_loss(labels, logits),
                             expected, rtol=1e-5, atol=1e-7)


def test_huber_loss():
  targets = np.zeros(4, np.float32)
  predictions = np.array([0.05, -0.05, 0.3, -1.0], np.float32)
  np.testing.assert_allclose(
      losses.huber_loss(targets, predictions, delta=0.1),
      [0.5 * 0.05**2, 0.5 * 0.05**2, 0.1 * 0.3 - 0.005, 0.1 - 0.005],
      rtol=1e-6)


def _ground_truth():
  boxes = np.zeros((2, 5, 4), np.float32)
  classes = -np.ones((2, 5), np.int32)
  boxes[0, :3] = [[10, 12, 60, 50], [64, 64, 126, 120], [30, 80, 46, 96]]
  classes[0, :3] = [1, 3, 2]
  boxes[1, :1], classes[1, :1] = [[20, 20, 100, 70]], [2]
  return boxes, classes


def _mg_labels(boxes, classes):
  multilevel = mg_anchor.Anchor(3, 7, 3, [0.5, 1.0, 2.0], 3.0,
                                list(IMAGE)).multilevel_boxes
  labeler = mg_anchor.AnchorLabeler(0.5, 0.4)
  per_image = []
  for b, c in zip(boxes, classes):
    n = int(np.sum(c > 0))
    cls, box, _, cls_w, box_w = labeler.label_anchors(
        multilevel, tf.constant(b[:n]), tf.constant(c[:n, None]))
    per_image.append(dict(cls_targets=cls, box_targets=box, cls_weights=cls_w,
                          box_weights=box_w))
  return tf.nest.map_structure(lambda *x: tf.stack(x), *per_image)


def _random_outputs(rng, multilevel, width):
  return {k: tf.constant(rng.normal(0, 1, (2,) + v.shape[:2] + (9 * width,)),
                         tf.float32) for k, v in multilevel.items()}


def test_retinanet_losses_match_model_garden_task():
  config = exp_factory.get_exp_config('retinanet_spinenet_coco').task
  config.model.num_classes = NUM_CLASSES
  task = mg_retinanet.RetinaNetTask(config)
  boxes, classes = _ground_truth()
  multilevel = anchors.generate_anchors(IMAGE)
  rng = np.random.default_rng(2)
  class_outputs = _random_outputs(rng, multilevel, NUM_CLASSES)
  box_outputs = _random_outputs(rng, multilevel, 4)
  total, class_loss, box_loss, _ = task.build_losses(
      {'cls_outputs': class_outputs, 'box_outputs': box_outputs},
      _mg_labels(boxes, classes))

  targets = assigner.assign_targets(anchors.flatten_anchors(multilevel), boxes,
                                    classes)
  ours = losses.retinanet_losses(
      anchors.flatten_levels(class_outputs, NUM_CLASSES),
      anchors.flatten_levels(box_outputs, 4), targets, NUM_CLASSES)
  np.testing.assert_allclose(ours['class_loss'], class_loss, rtol=1e-5)
  np.testing.assert_allclose(ours['box_loss'], box_loss, rtol=1e-5)
  np.testing.assert_allclose(ours['total_loss'], total, rtol=1e-5)
  assert float(ours['num_positives']) == float(
      tf.reduce_sum(_mg_labels(boxes, classes)['box_weights']))


def test_loss_without_objects_is_finite_and_has_no_box_term():
  multilevel = anchors.generate_anchors(IMAGE)
  flat = anchors.flatten_anchors(multilevel)
  targets = assigner.assign_targets(flat, np.zeros((1, 2, 4)), -np.ones((1, 2)))
  logits = tf.fill((1, len(flat), NUM_CLASSES), -4.0)
  deltas = tf.ones((1, len(flat), 4))
  result = losses.retinanet_losses(logits, deltas, targets, NUM_CLASSES)
  assert float(result['box_loss']) == 0.0
  assert float(result['num_positives']) == 0.0
  expected = len(flat) * NUM_CLASSES * 0.75 * _sigmoid(-4.0)**1.5 * -math.log(
      1 - _sigmoid(-4.0))
  np.testing.assert_allclose(result['class_loss'], expected, rtol=1e-4)
