"""Mask R-CNN's ops against Model Garden 2.20.0's: anchor labels, RoI
sampling, proposals, RoI align, mask targets and detections; and the
sampler's quotas and random stream."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from official.vision.modeling.layers import (detection_generator,
                                             roi_generator, roi_sampler)
from official.vision.ops import anchor as reference_anchor
from official.vision.ops import spatial_transform_ops

from spinenet_tf.detection import (anchors as anchors_lib, proposals,
                                   rcnn_postprocess, rcnn_targets, roi_align)

SIZE = 128
RNG = np.random.default_rng(0)


def _boxes(count, batch=2, low=4.0, high=0.7 * SIZE):
  corner = RNG.uniform(-4, SIZE * 0.8, (batch, count, 2))
  sides = RNG.uniform(low, high, (batch, count, 2))
  return np.concatenate([corner, corner + sides], -1).astype('float32')


GT_BOXES = np.array([[[8, 10, 60, 70], [40, 30, 120, 110], [0, 0, 0, 0]],
                     [[20, 20, 100, 90], [0, 0, 0, 0], [0, 0, 0, 0]]],
                    'float32')
GT_CLASSES = np.array([[1, 3, -1], [4, -1, -1]], 'int32')


def _count(mask, axis=1):
  return np.sum(np.asarray(mask), axis=axis)


def test_balanced_sample_keeps_its_quotas_and_draws_anew_each_call():
  positive = np.zeros((3, 1000), bool)
  positive[0, :100] = True   # more positives than the quota
  positive[1, :10] = True    # fewer
  negative = ~positive
  negative[2, 50:] = False   # fewer candidates than samples
  seed = keras.random.SeedGenerator(7)
  first = np.asarray(rcnn_targets.balanced_sample(positive, negative, 256,
                                                  0.25, seed))
  assert list(_count(first & positive)) == [64, 10, 0]
  assert list(_count(first & negative)) == [192, 246, 50]
  assert not np.any(first & ~(positive | negative))
  second = np.asarray(rcnn_targets.balanced_sample(positive, negative, 256,
                                                   0.25, seed))
  assert list(_count(second)) == [256, 256, 50]
  assert np.any(first != second)  # the stream moves on
  again = rcnn_targets.balanced_sample(positive, negative, 256, 0.25,
                                       keras.random.SeedGenerator(7))
  np.testing.assert_array_equal(again, first)  # and is seeded


def test_rpn_targets_equal_the_reference_labeler_when_all_are_sampled():
  multilevel = anchors_lib.generate_anchors((SIZE, SIZE), 3, 7, 1,
                                            (0.5, 1.0, 2.0), 3.0)
  anchors = anchors_lib.flatten_anchors(multilevel)
  ours = rcnn_targets.rpn_targets(anchors, GT_BOXES, GT_CLASSES,
                                  keras.random.SeedGenerator(0),
                                  num_samples=10**6)
  labeler = reference_anchor.RpnAnchorLabeler(0.7, 0.3, 10**6, 0.5)
  for image in range(2):
    valid = GT_CLASSES[image] > 0
    scores, boxes = labeler.label_anchors(
        {k: tf.constant(v) for k, v in multilevel.items()},
        tf.constant(GT_BOXES[image][valid]),
        tf.constant(GT_CLASSES[image][valid][:, None]))
    their_scores = np.concatenate([np.reshape(scores[k], -1)
                                   for k in sorted(scores, key=int)])
    their_boxes = np.concatenate([np.reshape(boxes[k], (-1, 4))
                                  for k in sorted(boxes, key=int)])
    np.testing.assert_array_equal(ours['score_targets'][image], their_scores)
    np.testing.assert_allclose(ours['box_targets'][image], their_boxes,
                               atol=1e-5)
    assert 0 < np.sum(their_scores == 1) < np.sum(their_scores == 0)


def test_sample_rois_equals_the_reference_sampler_when_all_are_sampled():
  candidates = _boxes(40)
  count = 40 + GT_BOXES.shape[1]
  # Model Garden pads boxes with -1 (ours are zeros: both are padding).
  padded = np.where(GT_CLASSES[..., None] > 0, GT_BOXES, -1.0)
  ours = rcnn_targets.sample_rois(candidates, padded, GT_CLASSES,
                                  keras.random.SeedGenerator(0),
                                  num_samples=count)
  rois, gt_boxes, classes, indices = roi_sampler.ROISampler(
      num_sampled_rois=count)(tf.constant(candidates), tf.constant(padded),
                              tf.constant(GT_CLASSES))
  np.testing.assert_allclose(ours['rois'], rois, atol=1e-6)
  np.testing.assert_array_equal(ours['classes'], classes)
  np.testing.assert_array_equal(ours['gt_indices'], indices)
  np.testing.assert_allclose(ours['gt_boxes'], gt_boxes, atol=1e-6)
  assert _count(np.asarray(ours['classes']) > 0).min() >= 1


def test_sample_masks_takes_foreground_first_with_their_targets():
  samples = rcnn_targets.sample_rois(_boxes(40), GT_BOXES, GT_CLASSES,
                                     keras.random.SeedGenerator(1),
                                     num_samples=16)
  masks = RNG.uniform(size=(2, 3, 28, 28)).astype('float32')
  picked = rcnn_targets.sample_masks(samples, GT_BOXES, masks, num_masks=8)
  classes = np.asarray(samples['classes'])
  for image in range(2):
    foreground = classes[image][classes[image] > 0]
    n = min(len(foreground), 8)
    np.testing.assert_array_equal(picked['classes'][image][:n],
                                  foreground[:n])
    assert np.all(np.asarray(picked['classes'][image][n:]) == 0)
  # A full instance mask: ones over a RoI on its box (the last row and
  # column sample half outside it), zeros over a RoI beside the box.
  beside = GT_BOXES + np.array([0, 200, 0, 200], 'float32')
  exact = {'rois': np.concatenate([GT_BOXES[:, :1], beside[:, :1]], 1),
           'classes': np.array([[1, 1], [4, 4]]),
           'gt_indices': np.zeros((2, 2), 'int32')}
  targets = np.asarray(rcnn_targets.sample_masks(
      exact, GT_BOXES, np.ones((2, 3, 28, 28), 'float32'), num_masks=2,
      mask_size=14)['targets'])
  np.testing.assert_allclose(targets[:, 0, :13, :13], 1.0, atol=1e-6)
  assert targets[:, 0].min() >= 0.25 - 1e-6
  np.testing.assert_allclose(targets[:, 1], 0.0, atol=1e-6)


def test_roi_align_and_mask_crops_equal_the_reference():
  features = {str(l): RNG.normal(size=(2, SIZE // 2**l, SIZE // 2**l, 8))
              .astype('float32') for l in range(2, 7)}
  boxes = _boxes(30, low=0.0, high=8.0 * SIZE)  # levels 2 to 6
  theirs = spatial_transform_ops.multilevel_crop_and_resize(
      {k: tf.constant(v) for k, v in features.items()}, tf.constant(boxes),
      7, 0.5)
  np.testing.assert_allclose(roi_align.multilevel_roi_align(features, boxes),
                             theirs, rtol=0, atol=1e-5)
  levels = np.asarray(roi_align.roi_levels(boxes, 2, 6))
  assert len(set(levels.ravel())) >= 3  # several levels read
  masks = RNG.uniform(size=(2, 30, 112, 112)).astype('float32')
  rois = boxes + RNG.normal(0, 10, boxes.shape).astype('float32')
  theirs = spatial_transform_ops.crop_mask_in_target_box(
      tf.constant(masks), tf.constant(boxes), tf.constant(rois), 28,
      sample_offset=0.5)
  np.testing.assert_allclose(roi_align.crop_masks(masks, boxes, rois, 28),
                             theirs, rtol=0, atol=1e-5)


def test_proposals_equal_the_reference_generator():
  multilevel = anchors_lib.generate_anchors((SIZE, SIZE), 3, 7, 1,
                                            (0.5, 1.0, 2.0), 3.0)
  scores = {k: RNG.normal(size=(2,) + v.shape[:2] + (3,)).astype('float32')
            for k, v in multilevel.items()}
  deltas = {k: RNG.normal(0, 0.3, (2,) + v.shape).astype('float32')
            for k, v in multilevel.items()}
  rois, roi_scores = proposals.propose_rois(scores, deltas, multilevel,
                                            (SIZE, SIZE), 100, 0.7, 50)
  generator = roi_generator.MultilevelROIGenerator(pre_nms_top_k=100,
                                                   num_proposals=50)
  theirs, their_scores = generator(
      {k: tf.constant(v) for k, v in deltas.items()},
      {k: tf.constant(v) for k, v in scores.items()},
      {k: tf.constant(np.tile(v.reshape(1, -1, 4), (2, 1, 1)))
       for k, v in multilevel.items()},
      tf.constant([[SIZE, SIZE]] * 2, tf.float32), training=True)
  np.testing.assert_allclose(roi_scores, their_scores, atol=1e-6)
  np.testing.assert_allclose(rois, theirs, atol=1e-4)


def test_detections_equal_the_reference_generator():
  rois = _boxes(50)
  class_logits = RNG.normal(0, 2, (2, 50, 5)).astype('float32')
  box_deltas = RNG.normal(0, 0.5, (2, 50, 20)).astype('float32')
  ours = rcnn_postprocess.detect(class_logits, box_deltas, rois,
                                 (SIZE, SIZE), max_detections=20)
  theirs = detection_generator.DetectionGenerator(max_num_detections=20)(
      tf.constant(box_deltas), tf.constant(class_logits), tf.constant(rois),
      tf.constant([[SIZE, SIZE]] * 2, tf.float32),
      regression_weights=[10.0, 10.0, 5.0, 5.0])
  np.testing.assert_array_equal(ours['num_detections'],
                                theirs['num_detections'])
  n = int(np.min(theirs['num_detections']))
  assert n > 5
  np.testing.assert_allclose(ours['scores'][:, :n],
                             theirs['detection_scores'][:, :n], atol=1e-6)
  np.testing.assert_array_equal(ours['classes'][:, :n],
                                theirs['detection_classes'][:, :n])
  np.testing.assert_allclose(ours['boxes'][:, :n],
                             theirs['detection_boxes'][:, :n], atol=1e-4)
