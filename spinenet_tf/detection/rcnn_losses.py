"""Mask R-CNN losses, normalised as Model Garden's `maskrcnn_losses`.

- RPN score: sigmoid cross-entropy over the sampled anchors, summed, over
  (images x anchors sampled per image).
- RPN box: Huber (delta 1/9) over the positive anchors' 4 deltas, per
  level summed and divided by that level's count of them (+ 0.01), the
  levels added.
- Fast R-CNN class: softmax cross-entropy, mean over the sampled RoIs.
- Fast R-CNN box: Huber (delta 1) on the deltas of the RoI's class, over
  the foreground RoIs' 4 deltas, divided by their count (+ 0.01).
- Mask: sigmoid cross-entropy over the foreground masks' pixels, divided
  by their count (+ 0.01).

Counts are per replica (Model Garden averages them over replicas; equal on
one device).
"""

from keras import ops

from spinenet_tf.detection.losses import huber_loss


def sigmoid_cross_entropy(labels, logits):
  """Elementwise, stable: max(z, 0) - z * y + log(1 + exp(-|z|))."""
  logits = ops.cast(logits, 'float32')
  labels = ops.cast(labels, 'float32')
  return (ops.maximum(logits, 0.0) - logits * labels
          + ops.log1p(ops.exp(-ops.abs(logits))))


def rpn_losses(score_logits, box_deltas, targets, level_sizes, num_samples,
               huber_delta=1.0 / 9):
  """RPN losses of flattened outputs (levels ascending).

  Args:
    score_logits: [B, N]; box_deltas: [B, N, 4].
    targets: what `rcnn_targets.rpn_targets` returned.
    level_sizes: anchors per level, summing to N.
    num_samples: anchors sampled per image.

  Returns:
    (score_loss, box_loss) scalars.
  """
  score_targets = targets['score_targets']
  weights = ops.cast(score_targets >= 0.0, 'float32')
  score_loss = ops.sum(sigmoid_cross_entropy(
      ops.maximum(score_targets, 0.0), score_logits) * weights)
  score_loss = score_loss / (ops.cast(ops.shape(score_logits)[0], 'float32')
                             * num_samples)
  huber = ops.sum(huber_loss(targets['box_targets'], box_deltas, huber_delta),
                  axis=-1) * targets['box_weights']
  box_loss, start = 0.0, 0
  for size in level_sizes:
    level = slice(start, start + size)
    count = 4.0 * ops.sum(targets['box_weights'][:, level])
    box_loss = box_loss + ops.sum(huber[:, level]) / (count + 0.01)
    start += size
  return score_loss, box_loss


def fast_rcnn_losses(class_logits, box_deltas, classes, box_targets,
                     huber_delta=1.0):
  """Second-stage losses.

  Args:
    class_logits: [B, S, C]; box_deltas: [B, S, C * 4] (class-specific).
    classes: [B, S] int target classes (0 background).
    box_targets: [B, S, 4] encoded targets (read where classes > 0).

  Returns:
    (class_loss, box_loss) scalars.
  """
  class_logits = ops.cast(class_logits, 'float32')
  num_classes = class_logits.shape[-1]
  classes = ops.cast(classes, 'int32')
  log_probs = ops.log_softmax(class_logits, axis=-1)
  class_loss = -ops.mean(ops.sum(
      ops.one_hot(classes, num_classes) * log_probs, axis=-1))
  deltas = ops.reshape(ops.cast(box_deltas, 'float32'),
                       (-1, box_deltas.shape[1], num_classes, 4))
  deltas = ops.take_along_axis(deltas, classes[:, :, None, None], axis=2)
  foreground = ops.cast(classes > 0, 'float32')
  huber = ops.sum(huber_loss(box_targets, deltas[:, :, 0], huber_delta),
                  axis=-1)
  box_loss = (ops.sum(huber * foreground)
              / (4.0 * ops.sum(foreground) + 0.01))
  return class_loss, box_loss


def mask_loss(mask_logits, mask_targets, classes):
  """Mask loss of logits [B, K, H, W] against targets; `classes` [B, K]
  (0: no loss)."""
  foreground = ops.cast(classes > 0, 'float32')
  height, width = mask_logits.shape[2:]
  per_mask = ops.sum(sigmoid_cross_entropy(mask_targets, mask_logits),
                     axis=(2, 3))
  return (ops.sum(per_mask * foreground)
          / (height * width * ops.sum(foreground) + 0.01))
