"""Detections from second-stage outputs (Model Garden's `DetectionGenerator`
with class-specific boxes): softmax scores without the background slot,
each class's deltas decoded against its RoI (weights 10, 10, 5, 5) and
clipped, the `pre_nms_top_k` best (RoI, class) pairs, then per-class NMS.
"""

from keras import ops

from spinenet_tf.detection import box_coder, postprocess

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def detect(class_logits, box_deltas, rois, image_size, max_detections=100,
           score_threshold=0.05, pre_nms_top_k=5000, iou_threshold=0.5,
           box_coder_weights=BOX_CODER_WEIGHTS,
           nms=postprocess.non_max_suppression):
  """Padded detections.

  Args:
    class_logits: [B, R, C] (slot 0 background).
    box_deltas: [B, R, C * 4] class-specific deltas.
    rois: [B, R, 4] pixels.
    image_size: (height, width) the boxes are clipped to.
    nms: `postprocess.non_max_suppression` or a function like it.

  Returns:
    The dict of `postprocess.non_max_suppression`, classes in [1, C).
  """
  num_rois, num_classes = class_logits.shape[1:]
  scores = ops.softmax(ops.cast(class_logits, 'float32'), axis=-1)[..., 1:]
  deltas = ops.reshape(ops.cast(box_deltas, 'float32'),
                       (-1, num_rois, num_classes, 4))[:, :, 1:]
  boxes = box_coder.decode_boxes(deltas, ops.cast(rois, 'float32')[:, :, None],
                                 box_coder_weights)
  boxes = box_coder.clip_boxes(boxes, image_size)
  pairs = num_rois * (num_classes - 1)
  top_scores, top_ids = ops.top_k(ops.reshape(scores, (-1, pairs)),
                                  min(pre_nms_top_k, pairs))
  top_boxes = ops.take_along_axis(ops.reshape(boxes, (-1, pairs, 4)),
                                  top_ids[..., None], axis=1)
  classes = ops.cast(top_ids % (num_classes - 1), 'int32') + 1
  return nms(top_boxes, top_scores, classes, max_detections, iou_threshold,
             score_threshold)
