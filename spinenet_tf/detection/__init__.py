"""Detection pieces of RetinaNet, in the order data flows through them:
anchors -> assigner (label encoding, uses box_coder) -> losses; and
postprocess (decode + NMS) for inference. All boxes are (ymin, xmin, ymax,
xmax) in pixels of the model input. COCO metrics: `detection.coco_eval`
(imported on its own: it loads pycocotools)."""

from spinenet_tf.detection.anchors import (anchors_per_location,
                                           flatten_anchors, flatten_levels,
                                           generate_anchors)
from spinenet_tf.detection.assigner import assign_targets
from spinenet_tf.detection.box_coder import (clip_boxes, decode_boxes,
                                             encode_boxes, pairwise_iou)
from spinenet_tf.detection.losses import (huber_loss, retinanet_losses,
                                          sigmoid_focal_loss)
from spinenet_tf.detection.postprocess import detect, non_max_suppression
