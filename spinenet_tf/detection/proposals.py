"""Region proposals from RPN outputs, level by level (Model Garden's
`MultilevelROIGenerator`).

Per level: sigmoid scores, boxes decoded from the anchors and clipped to
the image, the `pre_nms_top_k` best, NMS at `iou_threshold` keeping up to
`num_proposals`; then the `num_proposals` best over all levels. Slots
without a proposal hold a zero box with score 0. All levels run in one
static-shape NMS loop (`postprocess.non_max_suppression`), so the whole
thing compiles under XLA.
"""

from keras import ops

from spinenet_tf.detection import box_coder, postprocess


def propose_rois(score_outputs, box_outputs, multilevel_anchors, image_size,
                 pre_nms_top_k=2000, iou_threshold=0.7, num_proposals=1000):
  """Proposals for every image.

  Args:
    score_outputs: {str(level): [B, H, W, A]} objectness logits.
    box_outputs: {str(level): [B, H, W, A * 4]} box deltas.
    multilevel_anchors: {str(level): [H, W, A * 4]} anchors (pixels).
    image_size: (height, width) the boxes are clipped to.

  Returns:
    (rois [B, P, 4] pixels, scores [B, P]), P = min(num_proposals, all
    anchors), best first.
  """
  levels = sorted(multilevel_anchors, key=int)
  candidates, kept = [], []
  for level in levels:
    anchors = ops.convert_to_tensor(
        multilevel_anchors[level].reshape(-1, 4), 'float32')
    count = anchors.shape[0]
    scores = ops.sigmoid(ops.reshape(
        ops.cast(score_outputs[level], 'float32'), (-1, count)))
    deltas = ops.reshape(ops.cast(box_outputs[level], 'float32'),
                         (-1, count, 4))
    boxes = box_coder.clip_boxes(box_coder.decode_boxes(deltas, anchors),
                                 image_size)
    top_scores, top_ids = ops.top_k(scores, min(count, pre_nms_top_k))
    top_boxes = ops.take_along_axis(boxes, top_ids[..., None], axis=1)
    candidates.append((top_boxes, top_scores))
    kept.append(min(count, num_proposals))
  # One NMS over [B * L] rows: levels padded to the widest with score -1.
  width = max(scores.shape[1] for _, scores in candidates)
  boxes = ops.stack([ops.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)))
                     for b, _ in candidates], axis=1)
  scores = ops.stack([ops.pad(s, ((0, 0), (0, width - s.shape[1])),
                              constant_values=-1.0)
                      for _, s in candidates], axis=1)
  num_levels = len(levels)
  nms = postprocess.non_max_suppression(
      ops.reshape(boxes, (-1, width, 4)), ops.reshape(scores, (-1, width)),
      ops.zeros_like(ops.reshape(scores, (-1, width)), 'int32'),
      max_detections=max(kept), iou_threshold=iou_threshold,
      score_threshold=0.0, class_agnostic=True)
  level_boxes = ops.reshape(nms['boxes'], (-1, num_levels, max(kept), 4))
  level_scores = ops.reshape(nms['scores'], (-1, num_levels, max(kept)))
  all_boxes = ops.concatenate([level_boxes[:, i, :n]
                               for i, n in enumerate(kept)], axis=1)
  all_scores = ops.concatenate([level_scores[:, i, :n]
                                for i, n in enumerate(kept)], axis=1)
  top_scores, top_ids = ops.top_k(all_scores,
                                  min(num_proposals, all_scores.shape[1]))
  return (ops.take_along_axis(all_boxes, top_ids[..., None], axis=1),
          top_scores)
