"""The training command and loop: a demo config trains through
scripts/train.py in a subprocess, writes checkpoints and resumes at the
saved step. (NaN stops and bad configs through the same command:
tests/test_bad_inputs_training.py.)"""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from spinenet_tf.checkpoints import load_checkpoint
from spinenet_tf.export import model_config
from spinenet_tf.models import factory
from spinenet_tf.training.trainer import EVAL_METRICS_FILE

ROOT = os.path.join(os.path.dirname(__file__), '..')
SMALL = ('train_data.synthetic_num_images=16,eval_data.synthetic_num_images=8,'
         'train_data.global_batch_size=4,eval_data.global_batch_size=4,'
         'trainer.steps_per_loop=2,trainer.checkpoint_interval=4')


def train_command(model_dir, data_dir, *args,
                  experiment='demo_retinanet_synthetic', small=SMALL):
  """scripts/train.py of `experiment`, made small by `small`."""
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'train.py'),
       f'--experiment={experiment}', f'--model_dir={model_dir}',
       f'--data_dir={data_dir}', f'--params_override={small}', *args],
      capture_output=True, text=True, timeout=600,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})


def test_train_script_checkpoints_and_resumes(tmp_path):
  model_dir, data_dir = tmp_path / 'run', tmp_path / 'shapes'
  first = train_command(model_dir, data_dir,
                        '--params_override=trainer.train_steps=4')
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'step 4/4 (100%)' in first.stdout  # the console progress line
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-4')
  assert (model_dir / 'params.yaml').exists()
  assert tf.io.gfile.glob(str(model_dir / 'train' / 'events.*'))

  second = train_command(model_dir, data_dir, '--mode=train_and_eval',
                         '--params_override=trainer.train_steps=6')
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'at step 4.' in second.stderr
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-6')
  assert 'step 6 eval: AP ' in second.stdout
  assert (model_dir / 'best' / 'best.json').exists()
  tags = {value.tag for path in tf.io.gfile.glob(str(model_dir / 'eval' / '*'))
          for event in tf.compat.v1.train.summary_iterator(path)
          for value in event.summary.value}
  assert {'AP', 'predictions'} <= tags  # metrics and pictures with boxes
  with open(model_dir / EVAL_METRICS_FILE) as f:
    evaluation = json.load(f)
  assert evaluation['step'] == 6 and 'AP50' in evaluation['metrics']

  # What scripts/export.py does with a run: its params.yaml and checkpoint.
  model = factory.build_model_from_config(
      model_config.load_config(model_dir / 'params.yaml'))
  load_checkpoint(model, model_dir)
  saved = tf.train.load_checkpoint(str(model_dir))
  moving_mean = model.head.box_norms['3'][0].moving_mean  # a list-held layer
  np.testing.assert_array_equal(moving_mean.numpy(), saved.get_tensor(
      'model/head/box_norms[3][0]/moving_mean/.ATTRIBUTES/VARIABLE_VALUE'))
  assert np.abs(moving_mean.numpy()).max() > 0  # trained, not the init
