"""COCO evaluation of a detector over an evaluation dataset, under the
current tf.distribute strategy (`training/eval_loop.py`: each replica and
worker detects on its share; detections and labels are gathered to the
host, padding dropped, and the COCO metrics computed there)."""

import numpy as np

from spinenet_tf.detection import box_coder
from spinenet_tf.detection.coco_eval import CocoEvaluator
from spinenet_tf.training.eval_loop import EvalRun

# Labels the evaluator needs, gathered with the detections.
LABEL_KEYS = ('source_id', 'image_info', 'boxes', 'classes', 'is_crowd',
              'areas')


def _detect_fn(model):
  def detect(images, labels):
    detections = model.detect(images, labels['image_info'])
    outputs = {f'detection_{k}': v for k, v in detections.items()}
    outputs.update({k: labels[k] for k in LABEL_KEYS})
    return outputs
  return detect


def evaluate_detector(model, dataset, evaluator=None, category_names=None,
                      strategy=None, global_batch_size=None, steps=0):
  """Runs `model.detect` over `dataset` and returns COCO metrics.

  Args:
    model: a `RetinaNet` (anything with `detect(images, image_info)`
      returning boxes in original pixels, scores, classes, num_detections).
    dataset: evaluation batches of `build_detection_dataset(is_training=False)`
      (labels carry image_info, source_id, is_crowd, areas): a
      tf.data.Dataset (one replica), or a function input_context ->
      per-replica batches of this pipeline's share, distributed under
      `strategy` (with `global_batch_size`).
    evaluator: a `CocoEvaluator` to fill (e.g. one with an annotation file);
      a new one by default.
    strategy: the tf.distribute strategy; the current one by default.
    global_batch_size: images per step over all replicas (with a function).
    steps: evaluate only this many (global) batches; 0: all.

  Returns:
    The evaluator's result dict (AP, AP50, AP75, ...). Under
    MultiWorkerMirroredStrategy every worker gets all detections and
    returns the same metrics.
  """
  evaluator = evaluator or CocoEvaluator(category_names=category_names)
  run = EvalRun(strategy, _detect_fn(model), dataset, global_batch_size,
                steps)
  for outputs in run:
    info = outputs['image_info']
    detections = {k[len('detection_'):]: v for k, v in outputs.items()
                  if k.startswith('detection_')}
    detections['source_id'] = outputs['source_id']
    evaluator.update(
        dict(source_id=outputs['source_id'], height=info[:, 0, 0],
             width=info[:, 0, 1],
             boxes=np.asarray(box_coder.to_original_pixels(
                 outputs['boxes'], info)),
             classes=outputs['classes'], is_crowd=outputs['is_crowd'],
             areas=outputs['areas']),
        detections)
  return evaluator.result()
