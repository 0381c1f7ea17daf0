"""Mask R-CNN's training targets, sampled inside the training step.

Static shapes and `keras.ops` (XLA, TPU, JAX); randomness from a
`keras.random.SeedGenerator`. The rules are Model Garden's:

- `rpn_targets`: anchors labelled by IoU (>= 0.7 positive, < 0.3 negative,
  every box also takes its best anchor: `assigner.assign_targets`), then a
  random 256 per image, at most half positive; box targets on every
  positive anchor.
- `sample_rois`: proposals (with the ground truth mixed in) matched to
  the ground truth: IoU >= 0.5 foreground, [0, 0.5) background; a random
  512 per image, at most 25% foreground, in index order.
- `sample_masks`: the first 128 foreground RoIs of those and their mask
  targets (the instance mask cropped to the RoI, `roi_align.crop_masks`).
"""

import keras
from keras import ops

from spinenet_tf.detection import assigner, box_coder, roi_align


def _at_least_kth(keys, k):
  """[B, N] bool: entries among the k largest keys of their row (keys < 0
  never; ties at the k-th value all count)."""
  k = min(k, keys.shape[1])
  if k <= 0:
    return ops.zeros_like(keys, 'bool')
  kth = ops.top_k(keys, k)[0][:, -1:]
  return (keys >= kth) & (keys >= 0.0)


def balanced_sample(positive, negative, num_samples, positive_fraction,
                    seed_generator):
  """A random subset per row: up to floor(num_samples * positive_fraction)
  positives, then negatives up to num_samples in all.

  Args:
    positive, negative: [B, N] bool, disjoint candidates.

  Returns:
    [B, N] bool, the sampled entries.
  """
  noise = keras.random.uniform(ops.shape(positive), seed=seed_generator)
  max_positives = int(num_samples * positive_fraction)
  take_positive = positive & _at_least_kth(
      ops.where(positive, noise, -1.0), max_positives)
  num_negatives = num_samples - ops.sum(ops.cast(take_positive, 'int32'),
                                        axis=1, keepdims=True)
  # The rank of each negative among its row's negatives, by noise.
  negative_keys = ops.where(negative, noise, -1.0)
  ranked = ops.top_k(negative_keys, min(num_samples, negative.shape[1]))[0]
  last = ops.take_along_axis(
      ranked, ops.clip(num_negatives - 1, 0, ranked.shape[1] - 1), axis=1)
  take_negative = negative & (negative_keys >= last) & (num_negatives > 0)
  return take_positive | take_negative


def rpn_targets(anchors, gt_boxes, gt_classes, seed_generator,
                match_threshold=0.7, unmatched_threshold=0.3,
                num_samples=256, positive_fraction=0.5):
  """Objectness and box targets of the anchors [N, 4].

  Returns:
    dict score_targets [B, N] float (1 positive, 0 negative, -1 not
    sampled), box_targets [B, N, 4] (encoded, unweighted), box_weights
    [B, N] (1 on every positive anchor).
  """
  targets = assigner.assign_targets(anchors, gt_boxes, gt_classes,
                                    match_threshold, unmatched_threshold)
  positive = targets['box_weights'] > 0.0
  negative = (targets['class_weights'] > 0.0) & ~positive
  sampled = balanced_sample(positive, negative, num_samples,
                            positive_fraction, seed_generator)
  score_targets = ops.where(sampled, ops.cast(positive, 'float32'), -1.0)
  return {'score_targets': score_targets,
          'box_targets': targets['box_targets'],
          'box_weights': targets['box_weights']}


def _gather(values, indices):
  """values [B, N, ...] at indices [B, K] -> [B, K, ...]."""
  expand = indices
  for _ in range(len(values.shape) - 2):
    expand = ops.expand_dims(expand, -1)
  return ops.take_along_axis(values, expand, axis=1)


def sample_rois(proposals, gt_boxes, gt_classes, seed_generator,
                num_samples=512, foreground_fraction=0.25,
                foreground_iou=0.5, background_iou_high=0.5,
                background_iou_low=0.0, mix_gt_boxes=True):
  """RoIs for the second stage and what each should predict.

  Args:
    proposals: [B, P, 4] pixels (from `proposals.propose_rois`).
    gt_boxes: [B, M, 4] pixels; gt_classes: [B, M], -1 padding.

  Returns:
    dict rois [B, S, 4] (S: num_samples, or all P + M candidates when
    fewer), classes [B, S] int32 (0 background),
    gt_boxes [B, S, 4] (the matched box, 0 for background), gt_indices
    [B, S] int32 (the matched instance, -1 for background).
  """
  gt_boxes = ops.cast(gt_boxes, 'float32')
  proposals = ops.cast(proposals, 'float32')
  valid_gt = assigner.valid_ground_truth(gt_boxes, gt_classes)
  boxes = proposals
  valid_boxes = ops.ones_like(proposals[..., 0], 'bool')
  if mix_gt_boxes:
    boxes = ops.concatenate([proposals, gt_boxes], axis=1)
    valid_boxes = ops.concatenate([valid_boxes, valid_gt], axis=1)
  iou = box_coder.pairwise_iou(boxes, gt_boxes)  # [B, N, M]
  iou = ops.where(valid_gt[:, None, :] & valid_boxes[:, :, None], iou, -1.0)
  best_iou = ops.max(iou, axis=-1)
  matched = ops.cast(ops.argmax(iou, axis=-1), 'int32')
  positive = best_iou >= foreground_iou
  negative = ((best_iou >= background_iou_low)
              & (best_iou < background_iou_high) & ~positive)
  sampled = balanced_sample(positive, negative, num_samples,
                            foreground_fraction, seed_generator)
  # S indices: the sampled ones in index order, then (when too few) the
  # others as background, as Model Garden's static sampler fills.
  count = boxes.shape[1]
  order = ops.arange(count, dtype='float32')
  keys = ops.where(sampled, 3.0 * count - order,
                   ops.where(positive, -order - 1.0, count - order))
  indices = ops.top_k(keys, min(num_samples, count))[1]
  foreground = _gather(positive & sampled, indices)
  classes = ops.take_along_axis(ops.cast(gt_classes, 'int32'),
                                _gather(matched, indices), axis=1)
  gt_indices = ops.where(foreground, _gather(matched, indices), -1)
  matched_boxes = _gather(gt_boxes, ops.maximum(gt_indices, 0))
  return {
      'rois': _gather(boxes, indices),
      'classes': ops.where(foreground, classes, 0),
      'gt_boxes': ops.where(foreground[..., None], matched_boxes, 0.0),
      'gt_indices': gt_indices,
  }


def sample_masks(samples, gt_boxes, gt_masks, num_masks=128, mask_size=28):
  """The first `num_masks` foreground RoIs of `sample_rois` and their mask
  targets.

  Args:
    samples: what `sample_rois` returned.
    gt_boxes: [B, M, 4]; gt_masks: [B, M, Hm, Wm], each instance's mask
      within its box.

  Returns:
    dict rois [B, K, 4], classes [B, K] (0: a slot without a foreground
    RoI, no loss), targets [B, K, mask_size, mask_size].
  """
  count = samples['classes'].shape[1]
  order = ops.arange(count, dtype='float32')
  keys = ops.where(samples['classes'] > 0, 2.0 * count - order, count - order)
  indices = ops.top_k(keys, min(num_masks, count))[1]
  instances = ops.maximum(_gather(samples['gt_indices'], indices), 0)
  rois = _gather(samples['rois'], indices)
  targets = roi_align.crop_masks(_gather(gt_masks, instances),
                                 _gather(ops.cast(gt_boxes, 'float32'),
                                         instances), rois, mask_size)
  return {'rois': rois, 'classes': _gather(samples['classes'], indices),
          'targets': targets}
