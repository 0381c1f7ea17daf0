"""Detections from RetinaNet outputs: decode, score threshold, top-k, NMS.

Everything has static shapes (keras.ops, a fixed-trip loop), so it compiles
under XLA. Conventions are Model Garden's: class scores are sigmoids, class
slot 0 is background and never detected, boxes are clipped to the image.

NMS is greedy: `max_detections` times, take the best remaining candidate and
drop the candidates it overlaps with IoU > `iou_threshold` (only those of its
own class unless `class_agnostic`). Candidates are the `pre_nms_top_k` best
(anchor, class) pairs with score > `score_threshold`; class-agnostic NMS
first keeps each anchor's best class, as Model Garden does.
"""

from keras import ops

from spinenet_tf.detection import box_coder


def _candidates(boxes, scores, pre_nms_top_k, class_agnostic):
  """Top-k (box, score, class) candidates from [B, N, 4] and [B, N, C]."""
  if class_agnostic:
    best_classes = ops.argmax(scores, axis=-1)
    scores, per_anchor = ops.max(scores, axis=-1), 1
  else:
    per_anchor = scores.shape[2]
    scores = ops.reshape(scores, (-1, scores.shape[1] * per_anchor))
  top_scores, top_ids = ops.top_k(scores, min(pre_nms_top_k, scores.shape[1]))
  anchor_ids = top_ids // per_anchor
  classes = (ops.take_along_axis(best_classes, top_ids, axis=1)
             if class_agnostic else top_ids % per_anchor)
  top_boxes = ops.take_along_axis(boxes, ops.expand_dims(anchor_ids, -1),
                                  axis=1)
  return top_boxes, top_scores, ops.cast(classes, 'int32')


def non_max_suppression(boxes, scores, classes, max_detections=100,
                        iou_threshold=0.5, score_threshold=0.05,
                        class_agnostic=False):
  """Greedy NMS on candidates, batched, with padded static outputs.

  Args:
    boxes: [B, K, 4]; scores: [B, K]; classes: [B, K] int.
    max_detections: D, the number of output slots.

  Returns:
    dict boxes [B, D, 4], scores [B, D], classes [B, D] (int32),
    num_detections [B] (int32). Slots past num_detections hold zero boxes,
    score 0 and class -1; kept detections are sorted by score.
  """
  boxes = ops.cast(boxes, 'float32')
  scores = ops.cast(scores, 'float32')
  classes = ops.cast(classes, 'int32')
  num_candidates = scores.shape[1]
  slots = ops.arange(max_detections, dtype='int32')
  positions = ops.arange(num_candidates, dtype='int32')

  def step(i, state):
    remaining, picked, kept = state
    best = ops.cast(ops.argmax(remaining, axis=1), 'int32')  # [B]
    best_score = ops.take_along_axis(remaining, best[:, None], axis=1)
    keep = best_score[:, 0] > score_threshold
    best_box = ops.take_along_axis(boxes, best[:, None, None], axis=1)
    overlaps = box_coder.pairwise_iou(best_box, boxes)[:, 0] > iou_threshold
    if not class_agnostic:
      best_class = ops.take_along_axis(classes, best[:, None], axis=1)
      overlaps = overlaps & (classes == best_class)
    drop = overlaps | (positions == best[:, None])
    remaining = ops.where(drop & keep[:, None], -1.0, remaining)
    slot = slots == i
    picked = ops.where(slot, best[:, None], picked)
    kept = kept | (slot & keep[:, None])
    return remaining, picked, kept

  remaining = ops.where(scores > score_threshold, scores, -1.0)
  batch = ops.shape(scores)[0]
  picked = ops.zeros((batch, max_detections), 'int32')
  kept = ops.zeros((batch, max_detections), 'bool')
  _, picked, kept = ops.fori_loop(0, max_detections, step,
                                  (remaining, picked, kept))
  out_boxes = ops.take_along_axis(boxes, picked[..., None], axis=1)
  return {
      'boxes': ops.where(kept[..., None], out_boxes, 0.0),
      'scores': ops.where(kept, ops.take_along_axis(scores, picked, axis=1),
                          0.0),
      'classes': ops.where(kept, ops.take_along_axis(classes, picked, axis=1),
                           -1),
      'num_detections': ops.sum(ops.cast(kept, 'int32'), axis=1),
  }


def detect(class_logits, box_deltas, anchors, image_size, max_detections=100,
           score_threshold=0.05, pre_nms_top_k=5000, iou_threshold=0.5,
           class_agnostic=False, box_coder_weights=None):
  """Decodes flattened RetinaNet outputs and runs NMS.

  Args:
    class_logits: [B, N, num_classes] (slot 0 background).
    box_deltas: [B, N, 4] encoded boxes.
    anchors: [N, 4] anchors in pixels.
    image_size: (height, width) the boxes are clipped to.

  Returns:
    The dict of `non_max_suppression`, boxes in pixels, classes in
    [1, num_classes).
  """
  anchors = ops.convert_to_tensor(anchors, 'float32')
  boxes = box_coder.decode_boxes(box_deltas, anchors, box_coder_weights)
  boxes = box_coder.clip_boxes(boxes, image_size)
  scores = ops.sigmoid(ops.cast(class_logits[..., 1:], 'float32'))
  boxes, scores, classes = _candidates(boxes, scores, pre_nms_top_k,
                                       class_agnostic)
  return non_max_suppression(boxes, scores, classes + 1, max_detections,
                             iou_threshold, score_threshold, class_agnostic)
