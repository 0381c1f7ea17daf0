"""Box geometry on (ymin, xmin, ymax, xmax) boxes: IoU, clipping, and the
Faster R-CNN centre-size coding RetinaNet regresses.

Coding (anchor a, box b; centres y, x; sizes h, w):
  dy = (y_b - y_a) / h_a * wy    dx = (x_b - x_a) / w_a * wx
  dh = log(h_b / h_a) * wh       dw = log(w_b / w_a) * ww
Model Garden's RetinaNet uses no weights (`box_coder_weights=None`), i.e. all
ones; Faster R-CNN uses (10, 10, 5, 5).
"""

import math

from keras import ops

EPSILON = 1e-8
# Decoded log-sizes are capped so exp() cannot overflow (as in Detectron).
MAX_LOG_SIZE = math.log(1000.0 / 16.0)


def _centers_and_sizes(boxes):
  ymin, xmin, ymax, xmax = ops.unstack(boxes, 4, axis=-1)
  height, width = ymax - ymin, xmax - xmin
  return ymin + 0.5 * height, xmin + 0.5 * width, height, width


def _weights(weights):
  return (1.0, 1.0, 1.0, 1.0) if weights is None else tuple(weights)


def encode_boxes(boxes, anchors, weights=None):
  """Boxes [..., 4] relative to broadcastable anchors -> deltas [..., 4]."""
  wy, wx, wh, ww = _weights(weights)
  yc_a, xc_a, h_a, w_a = _centers_and_sizes(anchors)
  yc, xc, h, w = _centers_and_sizes(boxes)
  h_a, w_a, h, w = h_a + EPSILON, w_a + EPSILON, h + EPSILON, w + EPSILON
  return ops.stack([(yc - yc_a) / h_a * wy, (xc - xc_a) / w_a * wx,
                    ops.log(h / h_a) * wh, ops.log(w / w_a) * ww], axis=-1)


def decode_boxes(deltas, anchors, weights=None):
  """Inverse of `encode_boxes`; log-sizes are capped at log(1000 / 16)."""
  wy, wx, wh, ww = _weights(weights)
  deltas = ops.cast(deltas, anchors.dtype)
  dy, dx, dh, dw = ops.unstack(deltas, 4, axis=-1)
  dh = ops.minimum(dh / wh, MAX_LOG_SIZE)
  dw = ops.minimum(dw / ww, MAX_LOG_SIZE)
  yc_a, xc_a, h_a, w_a = _centers_and_sizes(anchors)
  yc, xc = dy / wy * h_a + yc_a, dx / wx * w_a + xc_a
  h, w = ops.exp(dh) * h_a, ops.exp(dw) * w_a
  return ops.stack([yc - 0.5 * h, xc - 0.5 * w, yc + 0.5 * h, xc + 0.5 * w],
                   axis=-1)


def clip_boxes(boxes, image_size):
  """Clips boxes [..., 4] to [0, height] x [0, width]."""
  height, width = (float(s) for s in image_size[:2])
  limits = ops.convert_to_tensor([height, width, height, width], boxes.dtype)
  return ops.maximum(ops.minimum(boxes, limits), 0.0)


def box_area(boxes):
  ymin, xmin, ymax, xmax = ops.unstack(boxes, 4, axis=-1)
  return ops.maximum(ymax - ymin, 0.0) * ops.maximum(xmax - xmin, 0.0)


def pairwise_iou(boxes_a, boxes_b):
  """IoU of boxes_a [..., N, 4] with boxes_b [..., M, 4] -> [..., N, M].

  Pairs with zero union (two empty boxes) get IoU 0.
  """
  # Coordinate by coordinate ([..., N, 1] against [..., 1, M]): no [N, M, 2]
  # intermediates and slices of them, a third of the CPU time.
  a = [ops.expand_dims(boxes_a[..., i], -1) for i in range(4)]
  b = [ops.expand_dims(boxes_b[..., i], -2) for i in range(4)]
  height = ops.maximum(ops.minimum(a[2], b[2]) - ops.maximum(a[0], b[0]), 0.0)
  width = ops.maximum(ops.minimum(a[3], b[3]) - ops.maximum(a[1], b[1]), 0.0)
  intersection = height * width
  union = (ops.expand_dims(box_area(boxes_a), -1)
           + ops.expand_dims(box_area(boxes_b), -2) - intersection)
  return ops.where(union > 0.0, intersection / ops.maximum(union, EPSILON),
                   0.0)


def to_original_pixels(boxes, image_info):
  """Boxes [B, N, 4] in model-input pixels -> pixels of the original images;
  `image_info` [B, 4, 2] as the eval parser writes it (row 2: the resize
  scale (y, x))."""
  scale = ops.cast(image_info[:, 2:3, :], 'float32')
  return ops.cast(boxes, 'float32') / ops.tile(scale, (1, 1, 2))
