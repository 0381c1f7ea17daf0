"""Detections from RetinaNet outputs with TensorFlow's own kernels.

The same function as `postprocess.detect` (same arguments, same padded
outputs), for graphs that need not compile under XLA: SavedModel serving on
CPU and GPU. `postprocess.detect` keeps static shapes for TPU, XLA and JAX,
so it scores every (anchor, class) pair, takes a top-k over all of them
(6.9M pairs for RetinaNet at 640 with 91 classes) and runs a 100-step NMS
loop; here only the pairs above the score threshold are touched:

1. anchors with a logit above the threshold's logit (less a margin) are
   gathered, the sigmoid of their pairs above it computed, and the pairs
   with score > threshold kept (when more than 1/16 of the anchors pass,
   all pairs are scored instead);
2. per image, the `pre_nms_top_k` best of them (ties: the lower anchor and
   class index first, as `top_k` over all pairs orders them);
3. their boxes decoded and clipped;
4. TF's fused `CombinedNonMaxSuppression` (per class; class-agnostic:
   `NonMaxSuppressionV5` per image), which suppresses IoU > threshold and
   keeps score > threshold, as the static NMS does.

The detections equal `postprocess.detect`'s (tests/test_tf_postprocess.py):
the same candidates, the same greedy per-class NMS. Documented difference:
detections of equal score may come in another order (and, when they tie at
the `max_detections` cut, another of them may be kept).
"""

import math

import tensorflow as tf

from spinenet_tf.detection import box_coder

# Logits within this of the threshold's logit are scored exactly: float32
# sigmoid is far more accurate than this, so the prefilter loses nothing.
_LOGIT_MARGIN = 1e-3
# Above 1/16 of the anchors looked at, scoring them all is the cheaper way.
_DENSE_SHARE = 16


def _logit(probability):
  if probability <= 0.0:
    return -math.inf
  return math.log(probability / (1.0 - probability))


def _top_candidates(values, bound, to_scores, score_threshold, top_k,
                    first_slot=0):
  """The `top_k` best candidates of each image among `values` [B, N, S] (N
  anchors, S slots each; slots before `first_slot` never count), those whose
  score (`to_scores` of the value) is > `score_threshold`, ordered as
  `top_k` over the flattened [B, N * S] values orders them. Returns scores,
  anchor ids and slots, each [B, K]; images with fewer candidates are
  padded with score -1.

  Only anchors with a value > `bound` are looked at, and only their values
  > `bound` scored; when more than 1/`_DENSE_SHARE` of the anchors pass (a
  near-zero threshold, an untrained model), every value is scored and
  `top_k` taken over all of them, as `postprocess.detect` does."""
  batch, num_slots = tf.shape(values)[0], values.shape[-1]
  anchors = tf.where(tf.reduce_max(values, axis=-1) > bound)  # [n, 2]

  def sparse():
    rows = tf.gather_nd(values, anchors)  # [n, S]
    pairs = tf.where(rows[:, first_slot:] > bound)  # [p, 2], row-major
    image_anchor = tf.gather(anchors, pairs[:, 0])
    slots = pairs[:, 1] + first_slot
    scores = to_scores(tf.gather_nd(rows, tf.stack([pairs[:, 0], slots], 1)))
    keep = scores > score_threshold

    def per_image(column, padding):
      return tf.RaggedTensor.from_value_rowids(
          tf.boolean_mask(column, keep),
          tf.boolean_mask(image_anchor[:, 0], keep),
          nrows=tf.cast(batch, tf.int64)).to_tensor(padding)

    scores = per_image(scores, -1.0)
    order = tf.math.top_k(scores, tf.minimum(top_k, tf.shape(scores)[1]))
    return (order.values,
            *(tf.gather(tf.cast(per_image(column, 0), tf.int32),
                        order.indices, batch_dims=1)
              for column in (image_anchor[:, 1], slots)))

  def everything():
    scores = to_scores(values)
    candidate = (scores > score_threshold) & (tf.range(num_slots)
                                              >= first_slot)
    flat = tf.reshape(tf.where(candidate, scores, -1.0), [batch, -1])
    order = tf.math.top_k(flat, tf.minimum(top_k, tf.shape(flat)[1]))
    return (order.values, order.indices // num_slots,
            order.indices % num_slots)

  many = tf.shape(anchors)[0] > batch * tf.shape(values)[1] // _DENSE_SHARE
  return tf.cond(many, everything, sparse)


def _class_aware_nms(boxes, scores, classes, num_classes, max_detections,
                     iou_threshold, score_threshold):
  """Combined NMS of candidates [B, K] of classes 0..num_classes-1."""
  per_class = tf.one_hot(classes, num_classes) * scores[..., None]
  nms = tf.image.combined_non_max_suppression(
      boxes[:, :, None, :], per_class, max_detections, max_detections,
      iou_threshold, score_threshold, pad_per_class=False, clip_boxes=False)
  return (nms.nmsed_boxes, nms.nmsed_scores,
          tf.cast(nms.nmsed_classes, tf.int32), nms.valid_detections)


def _class_agnostic_nms(boxes, scores, classes, max_detections,
                        iou_threshold, score_threshold):
  """NMS over all candidates [B, K] of an image, whatever their class."""
  def one(image):
    image_boxes, image_scores, image_classes = image
    picked, picked_scores, count = tf.raw_ops.NonMaxSuppressionV5(
        boxes=image_boxes, scores=image_scores,
        max_output_size=max_detections, iou_threshold=iou_threshold,
        score_threshold=score_threshold, soft_nms_sigma=0.0,
        pad_to_max_output_size=True)
    return (tf.gather(image_boxes, picked), picked_scores,
            tf.gather(image_classes, picked), count)

  return tf.map_fn(one, (boxes, scores, classes),
                   fn_output_signature=(
                       tf.TensorSpec([max_detections, 4], tf.float32),
                       tf.TensorSpec([max_detections], tf.float32),
                       tf.TensorSpec([max_detections], tf.int32),
                       tf.TensorSpec([], tf.int32)))


def detect(class_logits, box_deltas, anchors, image_size, max_detections=100,
           score_threshold=0.05, pre_nms_top_k=5000, iou_threshold=0.5,
           class_agnostic=False, box_coder_weights=None):
  """Decodes flattened RetinaNet outputs and runs NMS (see module doc).

  Args and returns: as `postprocess.detect`; the batch may be dynamic.
  """
  logits = tf.cast(class_logits, tf.float32)
  if class_agnostic:  # each anchor's best class, as postprocess.detect
    all_scores = tf.sigmoid(logits[..., 1:])
    best_classes = tf.argmax(all_scores, axis=-1, output_type=tf.int32)
    scores, anchor_ids, _ = _top_candidates(
        tf.reduce_max(all_scores, axis=-1, keepdims=True), score_threshold,
        tf.identity, score_threshold, pre_nms_top_k)
    classes = tf.gather(best_classes, anchor_ids, batch_dims=1)
  else:  # (anchor, class slot) pairs; slot 0 is the background
    scores, anchor_ids, slots = _top_candidates(
        logits, _logit(score_threshold) - _LOGIT_MARGIN, tf.sigmoid,
        score_threshold, pre_nms_top_k, first_slot=1)
    classes = slots - 1
  anchors = tf.gather(tf.convert_to_tensor(anchors, tf.float32), anchor_ids)
  boxes = box_coder.clip_boxes(box_coder.decode_boxes(
      tf.gather(box_deltas, anchor_ids, batch_dims=1), anchors,
      box_coder_weights), image_size)
  if class_agnostic:
    boxes, scores, classes, count = _class_agnostic_nms(
        boxes, scores, classes, max_detections, iou_threshold,
        score_threshold)
  else:
    boxes, scores, classes, count = _class_aware_nms(
        boxes, scores, classes, logits.shape[-1] - 1, max_detections,
        iou_threshold, score_threshold)
  kept = tf.range(max_detections)[None] < count[:, None]
  return {'boxes': tf.where(kept[..., None], boxes, 0.0),
          'scores': tf.where(kept, scores, 0.0),
          'classes': tf.where(kept, classes + 1, -1),
          'num_detections': count}
