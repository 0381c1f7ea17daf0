"""The shipped TFDS configs train and evaluate through scripts/train.py's
code (tests/tfds_mock_train.py: TFDS mocked with tfds.testing.mock_data, no
data, no network): RetinaNet-SpineNet-49S on coco/2017 and the SpineNet-49
classifier on i_naturalist2017, each as shipped (backbone, data pipeline,
augmentation, bfloat16, synchronized BN) but at 128x128, batch 2, for 2
training steps and one evaluation batch. Losses are finite; the eval
read its 2 images, found their ground truth, and wrote its metrics (COCO
AP / AR, top-1 / top-5) to TensorBoard and eval_metrics.json alike."""
import glob
import json
import math
import os
import subprocess
import sys

import pytest
import tensorflow as tf
import yaml

ROOT = os.path.join(os.path.dirname(__file__), '..')
SMALL = ('model.input_size=128,train_data.global_batch_size=2,'
         'eval_data.global_batch_size=2,trainer.train_steps=2,'
         'trainer.eval_steps=1')
COCO_METRICS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'ARmax1',
                'ARmax10', 'ARmax100', 'ARs', 'ARm', 'ARl')


def summaries(log_dir):
  """{tag: [numpy values]} of the summaries written under log_dir."""
  values = {}
  for path in glob.glob(os.path.join(log_dir, 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        values.setdefault(value.tag, []).append(tf.make_ndarray(value.tensor))
  return values


def scalars(log_dir):
  """{tag: [floats]} of the scalar summaries written under log_dir."""
  return {tag: [float(v) for v in values]
          for tag, values in summaries(log_dir).items()
          if all(v.ndim == 0 for v in values)}


@pytest.mark.parametrize(
    'experiment, source, loss_names, metrics, picture_tags', [
        ('retinanet_spinenet49s_coco', 'tfds',
         ('total_loss', 'class_loss', 'box_loss', 'l2_loss', 'loss'),
         COCO_METRICS, ['predictions']),
        ('classification_spinenet49_inaturalist2017', 'i_naturalist2017',
         ('total_loss', 'l2_loss', 'loss'),
         ('top_1_accuracy', 'top_5_accuracy'), []),
    ])
def test_shipped_tfds_config_trains_and_evaluates_on_mock_data(
    tmp_path, experiment, source, loss_names, metrics, picture_tags):
  model_dir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tests', 'tfds_mock_train.py'),
       f'--experiment={experiment}', f'--model_dir={model_dir}',
       f'--data_dir={tmp_path / "no_tfds_data"}', '--mode=train_and_eval',
       f'--params_override={SMALL}'],
      capture_output=True, text=True, timeout=300,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 0, result.stderr[-3000:]

  with open(model_dir / 'params.yaml') as f:
    params = yaml.safe_load(f)
  assert params['train_data']['source'] == source
  assert params['eval_data']['source'] == source
  assert params['trainer']['mixed_precision'] == 'bfloat16'
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-2')

  train = scalars(str(model_dir / 'train'))
  for name in loss_names:
    assert train.get(name), (name, sorted(train))
    assert all(math.isfinite(v) for v in train[name]), (name, train[name])
  evaluation = scalars(str(model_dir / 'eval'))
  assert sorted(evaluation) == sorted(metrics)
  pictures = sorted(set(summaries(str(model_dir / 'eval'))) - set(evaluation))
  assert pictures == picture_tags
  # One eval batch of 2 images from the mock data was read and scored.
  assert 'Evaluated 2 images;' in result.stderr
  with open(model_dir / 'eval_metrics.json') as f:
    written = json.load(f)
  assert written['step'] == 2
  assert written['metrics'] == pytest.approx(
      {name: values[0] for name, values in evaluation.items()})
  if metrics == COCO_METRICS:
    # The evaluator found ground-truth boxes (COCO gives -1 without any);
    # a size range the 2 images have no box of may be -1.
    for name in ('AP', 'AP50', 'AP75', 'ARmax1', 'ARmax10', 'ARmax100'):
      assert 0.0 <= evaluation[name][0] <= 1.0, (name, evaluation[name])
    for name in ('APs', 'APm', 'APl', 'ARs', 'ARm', 'ARl'):
      assert evaluation[name][0] == -1.0 or 0 <= evaluation[name][0] <= 1
  else:  # accuracies over 2 images
    top_1, top_5 = evaluation['top_1_accuracy'][0], evaluation[
        'top_5_accuracy'][0]
    assert top_1 in (0.0, 0.5, 1.0) and top_5 in (0.0, 0.5, 1.0)
    assert top_1 <= top_5
  assert 'step 2 eval: ' in result.stdout
