"""COCO evaluation of a detector over an evaluation dataset."""

import numpy as np
import tensorflow as tf

from spinenet_tf.detection.coco_eval import CocoEvaluator


def _to_original_pixels(boxes, image_info):
  """Boxes in model-input pixels -> pixels of the original image."""
  scale = np.tile(image_info[:, 2:3, :], (1, 1, 2))  # [B, 1, 4] (y, x, y, x)
  return boxes / scale


def evaluate_detector(model, dataset, evaluator=None, category_names=None):
  """Runs `model.detect` over `dataset` and returns COCO metrics.

  Args:
    model: a `RetinaNet` (anything with `detect(images, image_info)`
      returning boxes in original pixels, scores, classes, num_detections).
    dataset: evaluation batches of `build_detection_dataset(is_training=False)`
      (labels carry image_info, source_id, is_crowd, areas).
    evaluator: a `CocoEvaluator` to fill (e.g. one with an annotation file);
      a new one by default.

  Returns:
    The evaluator's result dict (AP, AP50, AP75, ...).
  """
  evaluator = evaluator or CocoEvaluator(category_names=category_names)
  detect = tf.function(model.detect)
  for images, labels in dataset:
    detections = {k: v.numpy() for k, v in
                  detect(images, labels['image_info']).items()}
    labels = {k: v.numpy() for k, v in labels.items()}
    info = labels['image_info']
    detections['source_id'] = labels['source_id']
    evaluator.update(
        dict(source_id=labels['source_id'], height=info[:, 0, 0],
             width=info[:, 0, 1],
             boxes=_to_original_pixels(labels['boxes'], info),
             classes=labels['classes'], is_crowd=labels['is_crowd'],
             areas=labels['areas']),
        detections)
  return evaluator.result()
