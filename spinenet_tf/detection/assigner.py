"""IoU target assignment of padded ground truth to anchors (label encoding).

Batched, static-shaped keras.ops, so it runs inside the loss on the
accelerator. Rules (those of Model Garden's `AnchorLabeler` with
`force_match_for_each_col=True`):
- an anchor whose best IoU is >= `positive_threshold` is positive for that
  box; below `negative_threshold` it is negative; in between it is ignored;
- every ground-truth box is also matched to its best anchor, which becomes
  positive even below the threshold (the lowest-index box wins a contested
  anchor);
- ground truth with class <= 0 (0 is the background slot, -1 padding) or an
  empty box is ignored; an image without any is all negative.
"""

from keras import ops

from spinenet_tf.detection import box_coder


def valid_ground_truth(gt_boxes, gt_classes):
  """[B, M] bool: real objects (class >= 1 and a non-empty box)."""
  ymin, xmin, ymax, xmax = ops.unstack(gt_boxes, 4, axis=-1)
  return ((ops.cast(gt_classes, 'int32') > 0) & (ymax > ymin)
          & (xmax > xmin))


def _forced_matches(best_anchors, valid, num_anchors):
  """[B, N]: for each anchor, the lowest index of the valid boxes whose best
  anchor it is (`best_anchors` [B, M]), M where there is none. A segment
  minimum over the B * M boxes: no [B, M, N] intermediate."""
  batch, num_boxes = ops.shape(valid)
  boxes = ops.broadcast_to(ops.arange(num_boxes, dtype='int32'),
                           (batch, num_boxes))
  segments = ops.where(
      valid, ops.cast(best_anchors, 'int32')
      + num_anchors * ops.arange(batch, dtype='int32')[:, None],
      batch * num_anchors)  # invalid boxes: one extra segment
  lowest = ops.segment_min(ops.reshape(boxes, (-1,)),
                           ops.reshape(segments, (-1,)),
                           num_segments=batch * num_anchors + 1)
  # Empty segments hold the dtype's maximum on every backend.
  return ops.reshape(ops.minimum(lowest[:-1], num_boxes),
                     (batch, num_anchors))


def assign_targets(anchors, gt_boxes, gt_classes, positive_threshold=0.5,
                   negative_threshold=0.4, force_match=True,
                   box_coder_weights=None):
  """Per-anchor training targets.

  Args:
    anchors: [N, 4] anchor boxes (pixels).
    gt_boxes: [B, M, 4] ground-truth boxes (pixels), padded.
    gt_classes: [B, M] class ids in [1, num_classes), padded with -1.
    positive_threshold, negative_threshold: the IoU band; equal values mean
      no ignored anchors (Model Garden's default parser uses 0.5 / 0.5).
    force_match: match every box to its best anchor.
    box_coder_weights: see `box_coder.encode_boxes`.

  Returns:
    dict of
      class_targets [B, N] int32: class id of positives, -1 elsewhere;
      box_targets [B, N, 4]: encoded boxes of positives, 0 elsewhere;
      class_weights [B, N]: 1 for positives and negatives, 0 if ignored;
      box_weights [B, N]: 1 for positives.
  """
  if negative_threshold > positive_threshold:
    raise ValueError(f'negative_threshold {negative_threshold} must not exceed '
                     f'positive_threshold {positive_threshold}.')
  anchors = ops.convert_to_tensor(anchors, 'float32')
  gt_boxes = ops.cast(gt_boxes, 'float32')
  gt_classes = ops.cast(gt_classes, 'int32')
  valid = valid_ground_truth(gt_boxes, gt_classes)
  num_anchors = anchors.shape[0]

  iou = box_coder.pairwise_iou(anchors, gt_boxes)  # [B, N, M]
  iou = ops.where(ops.expand_dims(valid, 1), iou, -1.0)
  matched = ops.argmax(iou, axis=-1)  # [B, N]
  best_iou = ops.max(iou, axis=-1)
  positive = best_iou >= positive_threshold
  negative = best_iou < negative_threshold
  if force_match:
    forced_box = _forced_matches(ops.argmax(iou, axis=1), valid, num_anchors)
    forced = forced_box < ops.shape(gt_classes)[1]
    matched = ops.where(forced, forced_box, matched)
    positive = positive | forced
    negative = negative & ~forced

  matched_boxes = ops.take_along_axis(
      gt_boxes, ops.expand_dims(matched, -1), axis=1)
  matched_classes = ops.take_along_axis(gt_classes, matched, axis=1)
  box_targets = box_coder.encode_boxes(matched_boxes, anchors,
                                       box_coder_weights)
  return {
      'class_targets': ops.where(positive, matched_classes, -1),
      'box_targets': ops.where(ops.expand_dims(positive, -1), box_targets, 0.0),
      'class_weights': ops.cast(positive | negative, 'float32'),
      'box_weights': ops.cast(positive, 'float32'),
  }
