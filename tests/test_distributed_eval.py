"""Evaluation under MirroredStrategy on 2 logical CPUs equals single-device
evaluation, with an image count that the global batch does not divide
(13 images, global batch 4: per-replica batches of 2, the last one partial
and padded): all 12 COCO metrics within 1e-9, top-1 / top-5 exactly, and
every image evaluated once (7 on one replica, 6 on the other).

The reference is the single-device path: a plain tf.data.Dataset of global
batches, no strategy. Logical devices must be set before TensorFlow starts,
so the comparison runs in a subprocess running this file.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.training import eval_loop

NUM_IMAGES, GLOBAL_BATCH, SIZE = 13, 4, 128
LOG = re.compile(r'Evaluated (\d+) images; this worker ran \[([\d, ]*)\]')


def _run(out, data_dir):
  import keras
  from absl import logging
  from spinenet_tf.training import config as config_lib
  from spinenet_tf.training import strategy as strategy_lib
  from spinenet_tf.training.tasks import ClassificationTask, DetectionTask

  strategy_lib.use_logical_cpus(2)
  mirrored = strategy_lib.build_strategy('mirrored')
  assert mirrored.num_replicas_in_sync == 2
  lines = []

  class Lines(logging.logging.Handler):
    def emit(self, record):
      lines.append(record.getMessage())
  logging.get_absl_logger().addHandler(Lines())
  logging.set_verbosity(logging.INFO)

  def counts():
    found = [LOG.search(line) for line in lines]
    found = [m for m in found if m]
    lines.clear()
    assert len(found) == 1, found
    return [int(found[0].group(1)),
            [int(c) for c in found[0].group(2).split(',')]]

  results = {}
  keras.utils.set_random_seed(0)
  detection = DetectionTask(config_lib.config_from_dict({
      'task': 'detection',
      'model': {'backbone': 'mobile-49XS', 'input_size': SIZE,
                'num_classes': 4, 'num_convs': 1, 'num_filters': 16,
                # Random weights: keep every box, so that AP is not 0.
                'score_threshold': 0.0},
      'train_data': {'source': 'synthetic', 'synthetic_num_images': 1},
      'eval_data': {'source': 'synthetic', 'global_batch_size': GLOBAL_BATCH,
                    'max_num_instances': 8,
                    'synthetic_num_images': NUM_IMAGES}}), data_dir)
  with mirrored.scope():
    model = detection.build_model()
  # The initial output kernels (stddev 1e-5) give every box the prior
  # score: all ties. Random kernels give scores and boxes that differ.
  rng = np.random.default_rng(0)
  outputs = [v for v in model.weights
             if v.path.endswith(('class_output/kernel', 'box_output/kernel'))]
  assert len(outputs) == 2, [v.path for v in model.weights][-8:]
  for v in outputs:
    v.assign(rng.normal(scale=0.05, size=v.shape).astype('float32'))
  results['detection_one'] = detection.evaluate(model,
                                                detection.eval_dataset())
  results['detection_one_counts'] = counts()
  with mirrored.scope():
    results['detection_two'] = detection.evaluate(model)
  results['detection_two_counts'] = counts()

  class RandomImages(ClassificationTask):
    """NUM_IMAGES fixed random images and labels; each pipeline reads its
    share."""

    def eval_dataset(self, input_context=None):
      rng = np.random.default_rng(0)
      images = rng.normal(size=(NUM_IMAGES, SIZE, SIZE, 3)).astype('float32')
      labels = rng.integers(0, 10, NUM_IMAGES).astype('int32')
      ds = tf.data.Dataset.from_tensor_slices((images, labels))
      if input_context:
        ds = ds.shard(input_context.num_input_pipelines,
                      input_context.input_pipeline_id)
      return ds.batch(input_context.get_per_replica_batch_size(GLOBAL_BATCH)
                      if input_context else GLOBAL_BATCH)

  classification = RandomImages(config_lib.config_from_dict({
      'task': 'classification',
      'model': {'backbone': 'mobile-49XS', 'input_size': SIZE,
                'num_classes': 10},
      'train_data': {'source': 'i_naturalist2017'},
      'eval_data': {'source': 'i_naturalist2017',
                    'global_batch_size': GLOBAL_BATCH}}))
  with mirrored.scope():
    model = classification.build_model()
  results['classification_one'] = classification.evaluate(
      model, classification.eval_dataset())
  results['classification_one_counts'] = counts()
  with mirrored.scope():
    results['classification_two'] = classification.evaluate(model)
  results['classification_two_counts'] = counts()
  with open(out, 'w') as f:
    json.dump(results, f)


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('distributed_eval')
  out = str(tmp_path / 'results.json')
  result = subprocess.run(
      [sys.executable, __file__, out, str(tmp_path / 'shapes')],
      capture_output=True, text=True, timeout=600,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2',
           'PYTHONPATH': os.path.join(os.path.dirname(__file__), '..')})
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out) as f:
    return json.load(f)


def test_mirrored_detection_metrics_equal_one_device(results):
  one, two = results['detection_one'], results['detection_two']
  assert len(one) == 12 and set(one) == set(two)
  assert one['AP'] > 0 and one['ARmax100'] > 0, one
  for name in one:
    assert abs(two[name] - one[name]) <= 1e-9, (name, one[name], two[name])
  assert results['detection_one_counts'] == [NUM_IMAGES, [NUM_IMAGES]]
  # 7 batches of 2 (the last one partial) alternate between the replicas.
  assert results['detection_two_counts'] == [NUM_IMAGES, [7, 6]]


def test_mirrored_classification_accuracy_equals_one_device(results):
  one, two = results['classification_one'], results['classification_two']
  assert one == two
  assert 0 < one['top_5_accuracy'] < 1, one
  assert results['classification_one_counts'] == [NUM_IMAGES, [NUM_IMAGES]]
  assert results['classification_two_counts'] == [NUM_IMAGES, [7, 6]]


def test_padded_batches_mark_padding_and_keep_every_image():
  ds = tf.data.Dataset.range(5).map(lambda i: (tf.fill([2], i), {'id': i}))
  ds = eval_loop.padded_batches(ds.batch(2), 2)
  batches = list(ds.take(5).as_numpy_iterator())
  ids = [b[1]['id'].tolist() for b in batches]
  valid = [b[2].tolist() for b in batches]
  assert ids == [[0, 1], [2, 3], [4, 0], [0, 0], [0, 0]]
  assert valid == [[True, True], [True, True], [True, False],
                   [False, False], [False, False]]
  assert batches[0][0].shape == (2, 2)


if __name__ == '__main__':
  _run(sys.argv[1], sys.argv[2])
