"""Tasks: what the loop trains (model, datasets, loss, evaluation).

A task gives `build_model()`, `train_dataset(input_context)` (per-replica
batches of the global batch, repeated), `eval_dataset(input_context)`
(per-replica batches of this pipeline's share, one pass),
`training_inputs(model, images, labels)` (what the model's training call
takes), `losses(model, outputs, labels)` -> dict of `loss_names` with
'total_loss' (per replica; the loop divides by the number of replicas) and
`evaluate(model, dataset, steps)` -> metrics, where `dataset` is `eval_dataset` itself (distributed
under the current strategy: `training/eval_loop.py`) or a tf.data.Dataset
(one replica).
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from spinenet_tf.data import image_ops
from spinenet_tf.io_utils import atomic_write
from spinenet_tf.data.label_map import read_label_map
from spinenet_tf.data.skipping import SkipCounter
from spinenet_tf.detection.coco_eval import CocoEvaluator
from spinenet_tf.data import synthetic_shapes  # noqa: F401  (tests patch it)
from spinenet_tf.data.classification_input import build_classification_dataset
from spinenet_tf.data.detection_input import (SYNTHETIC,
                                              build_detection_dataset)
from spinenet_tf.detection import assigner
from spinenet_tf.training.detection_eval import evaluate_detector
from spinenet_tf.models.factory import build_model_from_config, detector_type
from spinenet_tf.training.eval_loop import EvalRun
from spinenet_tf.viz.boxes import draw_detections

# Beside a built-in dataset the trainer wrote: the config keys it holds.
WRITTEN_FOR_FILE = 'written_for.json'


def _input_size(model):
  size = model['input_size']
  return size if isinstance(size, int) else size[0]


def _per_replica(data, input_context):
  if input_context is None:
    return data.global_batch_size
  return input_context.get_per_replica_batch_size(data.global_batch_size)


def trim_instance_padding(labels, keys=('boxes', 'classes')):
  """`labels` with each of `keys` ([B, M, ...] per instance) cut after the
  last real box of the batch (at least one slot). Nothing after it is ever
  matched, so the targets are the same."""
  real = assigner.valid_ground_truth(labels['boxes'], labels['classes'])
  slots = tf.range(1, tf.shape(real)[1] + 1)
  keep = tf.maximum(tf.reduce_max(tf.where(real, slots, 0)), 1)
  return {**labels, **{key: labels[key][:, :keep] for key in keys}}


class Task:
  """Shared parts: the model comes from the config's `model` section."""

  def __init__(self, config, data_dir=None):
    self.config = config
    self.data_dir = data_dir
    # What the training input skipped and lost (every replica's pipeline
    # adds to it); the trainer names it when training data gives nothing.
    self.train_skips = SkipCounter()

  def build_model(self, num_classes=None):
    """The config's model (with `num_classes` instead, if given)."""
    model = dict(self.config.model)
    if num_classes is not None:
      model['num_classes'] = num_classes
    return build_model_from_config({'task': self.config.task,
                                    'model': model})

  def _data_dir(self, data):
    return data.data_dir or self.data_dir

  def drop_padding(self, labels):
    """`labels` without padding the losses do not need, for steps whose
    shapes may vary from batch to batch (not under XLA or TPU); the same
    losses. None here."""
    return labels

  def training_inputs(self, model, images, labels):
    """What `model(..., training=True)` takes: the images here."""
    del model, labels
    return images


class DetectionTask(Task):
  """A detector of model.type (`models.factory.DETECTORS`): its losses
  (`Detector` protocol), COCO metrics (against the records' boxes, or
  eval_data.annotation_file; per class by label map name)."""

  def __init__(self, config, data_dir=None):
    super().__init__(config, data_dir)
    self.label_map = (read_label_map(config.label_map) if config.label_map
                      else None)
    self.detector_class = detector_type(config.model).model_class
    self.loss_names = self.detector_class.LOSS_NAMES

  def _dataset(self, data, is_training, input_context=None, batch_size=None):
    data_dir = self._data_dir(data)
    if data.source in SYNTHETIC:
      self._ensure_synthetic(data.source, data_dir)
    return build_detection_dataset(
        data.source, is_training, _input_size(self.config.model),
        batch_size or _per_replica(data, input_context),
        file_pattern=data.file_pattern, data_dir=data_dir, split=data.split,
        num_classes=self.config.model['num_classes'],
        max_num_instances=data.max_num_instances,
        scale_range=tuple(data.scale_range), shuffle_buffer=data.shuffle_buffer,
        seed=data.seed, input_context=input_context,
        label_map=self.label_map,
        skip_counter=self.train_skips if is_training else None,
        mask_size=(self.detector_class.TRAINING_MASK_SIZE if is_training
                   else None))

  def _ensure_synthetic(self, source, data_dir):
    """Writes a built-in dataset on first use (the demo needs no data),
    with WRITTEN_FOR_FILE: the config keys it was written for. A dataset
    written for other values of those keys is refused (one written by
    spinenet-make-dataset has no such file and is read as it is)."""
    if data_dir is None:
      raise ValueError(f'source {source!r} needs a data_dir (--data_dir).')
    module = SYNTHETIC[source]
    c = self.config
    keys = {'train_data.synthetic_num_images':
                c.train_data.synthetic_num_images,
            'eval_data.synthetic_num_images': c.eval_data.synthetic_num_images,
            'model.input_size': _input_size(c.model)}
    record = os.path.join(data_dir, WRITTEN_FOR_FILE)
    if not tf.io.gfile.exists(os.path.join(data_dir, module.INFO_FILE)):
      module.write_synthetic_dataset(
          data_dir, keys['train_data.synthetic_num_images'],
          keys['eval_data.synthetic_num_images'], keys['model.input_size'],
          seed=0)
      atomic_write(record, json.dumps(keys, indent=2))
    elif tf.io.gfile.exists(record):
      with tf.io.gfile.GFile(record) as f:
        written = json.load(f)
      changed = [f'{key} {written.get(key)} there, {value} here'
                 for key, value in keys.items() if written.get(key) != value]
      if changed:
        raise ValueError(
            f'data_dir {data_dir!r} holds the {source} dataset written for '
            f'other config values ({"; ".join(changed)}); use another '
            '--data_dir, or remove it to write it again.')

  def train_dataset(self, input_context=None):
    return self._dataset(self.config.train_data, True, input_context).repeat()

  def eval_dataset(self, input_context=None):
    return self._dataset(self.config.eval_data, False, input_context)

  def training_inputs(self, model, images, labels):
    return model.training_inputs(images, labels)

  def losses(self, model, outputs, labels):
    return model.training_losses(outputs, labels)

  def drop_padding(self, labels):
    """The ground truth cut after the batch's last real box: the target
    assignment compares every anchor (or RoI) with every slot, and the
    padding (max_num_instances, 100 in the COCO configs) is most of them."""
    return trim_instance_padding(labels, self.detector_class.INSTANCE_LABELS)

  def evaluate(self, model, dataset=None, steps=0):
    """COCO metrics under the current strategy; `dataset`: `eval_dataset`
    by default."""
    return evaluate_detector(
        model, self.eval_dataset if dataset is None else dataset,
        evaluator=self.evaluator(), steps=steps,
        global_batch_size=self.config.eval_data.global_batch_size)

  def evaluator(self):
    """A CocoEvaluator: ground truth from eval_data.annotation_file or the
    records; per-class AP by name with a label map."""
    label_map = self.label_map
    annotation_file = self.config.eval_data.annotation_file
    return CocoEvaluator(
        annotation_file=annotation_file,
        category_names=label_map.names if label_map else None,
        per_category=label_map is not None,
        # The JSON's category ids; the records hold the class ids.
        category_ids=label_map.annotation_id if label_map and annotation_file
        else None)

  def summary_images(self, model, num_images):
    """uint8 [N, H, W, 3]: the first eval images with their detections
    (score >= 0.3), for TensorBoard."""
    images, _ = next(iter(self.eval_dataset().unbatch().batch(num_images)))
    detections = {k: v.numpy() for k, v in model.detect(images).items()}
    pixels = np.clip(images.numpy() * image_ops.STDDEV_RGB
                     + image_ops.MEAN_RGB, 0, 255).astype(np.uint8)
    return np.stack([
        draw_detections(pixels[i], detections['boxes'][i],
                        detections['classes'][i], detections['scores'][i],
                        class_names=self.label_map.names if self.label_map
                        else None)
        for i in range(len(pixels))])


class ClassificationTask(Task):
  """Cross-entropy (labels smoothed by the pipeline); top-1 / top-5."""
  loss_names = ('total_loss',)

  def _dataset(self, data, is_training, input_context=None):
    return build_classification_dataset(
        data.source, data.split or (
            'train' if is_training else 'validation'),
        is_training, _input_size(self.config.model), data.global_batch_size,
        data_dir=self._data_dir(data),
        randaugment=tuple(data.randaugment) if data.randaugment else None,
        label_smoothing=data.label_smoothing,
        num_classes=self.config.model['num_classes'],
        shuffle_buffer=data.shuffle_buffer, seed=data.seed,
        input_context=input_context,
        skip_counter=self.train_skips if is_training else None)

  def train_dataset(self, input_context=None):
    return self._dataset(self.config.train_data, True, input_context).repeat()

  def eval_dataset(self, input_context=None):
    return self._dataset(self.config.eval_data, False, input_context)

  def losses(self, model, outputs, labels):
    logits = tf.cast(outputs, tf.float32)
    if labels.shape.rank == 2:
      loss = keras.losses.categorical_crossentropy(labels, logits,
                                                   from_logits=True)
    else:
      loss = keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                          from_logits=True)
    return {'total_loss': tf.reduce_mean(loss)}

  def evaluate(self, model, dataset=None, steps=0):
    """Top-1 / top-5 accuracy under the current strategy: each replica
    counts its hits, the counts are summed over replicas and workers.
    `dataset`: `eval_dataset` by default."""
    def hits(images, labels):
      # Mixed precision gives bfloat16 / float16 logits; in_top_k takes
      # only float32.
      logits = tf.cast(model(images, training=False), tf.float32)
      targets = (tf.argmax(labels, axis=-1, output_type=tf.int32)
                 if labels.shape.rank == 2 else tf.cast(labels, tf.int32))
      return {f'top_{k}': tf.cast(tf.math.in_top_k(targets, logits, k),
                                  tf.int32) for k in (1, 5)}

    run = EvalRun(None, hits,
                  self.eval_dataset if dataset is None else dataset,
                  self.config.eval_data.global_batch_size, steps)
    top1 = top5 = 0
    for outputs in run:
      top1 += int(outputs['top_1'].sum())
      top5 += int(outputs['top_5'].sum())
    if not run.num_images:
      raise ValueError('No images to evaluate.')
    return {'top_1_accuracy': top1 / run.num_images,
            'top_5_accuracy': top5 / run.num_images}


def build_task(config, data_dir=None):
  cls = DetectionTask if config.task == 'detection' else ClassificationTask
  return cls(config, data_dir)
