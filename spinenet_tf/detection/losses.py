"""RetinaNet losses: sigmoid focal loss on classes, Huber loss on box deltas.

Normalisation follows Model Garden's RetinaNet task: both sums are divided
by (number of positive anchors in the batch + 1); the per-anchor Huber loss
is the mean over its 4 coordinates; total = class + box_loss_weight * box.
"""

from keras import ops


def sigmoid_focal_loss(labels, logits, alpha=0.25, gamma=1.5):
  """Elementwise focal loss (Lin et al. 2017) of one-hot `labels`.

  With z_t the logit of the true outcome (z for a 1, -z for a 0) and
  p_t = sigmoid(z_t): alpha_t (1 - p_t)^gamma (-log p_t), computed as
  exp(-gamma softplus(z_t)) softplus(-z_t), since log(1 - p_t) =
  -softplus(z_t) and -log(p_t) = softplus(-z_t): the usual sigmoid /
  cross-entropy / pow form without its Pow and with half of its
  elementwise ops, and no 1 - p_t cancellation (closer to a float64
  reference).
  """
  logits = ops.cast(logits, 'float32')
  positive = ops.cast(labels, 'float32') == 1.0
  true_logit = ops.where(positive, logits, -logits)
  loss = (ops.exp(-gamma * ops.softplus(true_logit))
          * ops.softplus(-true_logit))
  return ops.where(positive, alpha, 1.0 - alpha) * loss


def huber_loss(targets, predictions, delta=0.1):
  """Elementwise Huber loss: quadratic below `delta`, linear above."""
  error = ops.abs(ops.cast(targets, 'float32') - ops.cast(predictions,
                                                          'float32'))
  quadratic = ops.minimum(error, delta)
  return 0.5 * quadratic**2 + delta * (error - quadratic)


def retinanet_losses(class_logits, box_deltas, targets, num_classes,
                     focal_alpha=0.25, focal_gamma=1.5, huber_delta=0.1,
                     box_loss_weight=50.0):
  """Detection losses of flattened outputs against `assign_targets` targets.

  Args:
    class_logits: [B, N, num_classes].
    box_deltas: [B, N, 4].
    targets: the dict returned by `assigner.assign_targets`.
    num_classes: width of the class output (including background slot 0).

  Returns:
    dict of scalars total_loss, class_loss, box_loss, num_positives (without
    the +1).
  """
  num_positives = ops.sum(targets['box_weights'])
  normalizer = num_positives + 1.0
  one_hot = ops.one_hot(targets['class_targets'], num_classes)  # -1: zeros
  focal = ops.sum(sigmoid_focal_loss(one_hot, class_logits, focal_alpha,
                                     focal_gamma), axis=-1)
  class_loss = ops.sum(focal * targets['class_weights']) / normalizer
  huber = ops.mean(huber_loss(targets['box_targets'], box_deltas, huber_delta),
                   axis=-1)
  box_loss = ops.sum(huber * targets['box_weights']) / normalizer
  return {
      'total_loss': class_loss + box_loss_weight * box_loss,
      'class_loss': class_loss,
      'box_loss': box_loss,
      'num_positives': num_positives,
  }
