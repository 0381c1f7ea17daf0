"""Mask R-CNN trains through scripts/train.py by model.type: the demo
config on the synthetic shapes (records with instance masks), the step
compiled by XLA (trainer.jit_compile, as TPUs need), checkpoints, resumes
(without XLA) and evaluates box AP."""

import numpy as np
import tensorflow as tf

from spinenet_tf.checkpoints import load_checkpoint
from spinenet_tf.export import model_config
from spinenet_tf.models import factory
from spinenet_tf.models.maskrcnn import MaskRCNN
from tests import test_training_loop as training_loop

SMALL = ('train_data.synthetic_num_images=16,eval_data.synthetic_num_images=8,'
         'train_data.global_batch_size=2,eval_data.global_batch_size=4,'
         'trainer.steps_per_loop=2,trainer.checkpoint_interval=2')


def train_command(model_dir, data_dir, *args):
  return training_loop.train_command(
      model_dir, data_dir, *args, experiment='demo_maskrcnn_synthetic',
      small=SMALL)


def test_demo_config_trains_resumes_and_evaluates(tmp_path):
  model_dir, data_dir = tmp_path / 'run', tmp_path / 'shapes'
  first = train_command(model_dir, data_dir, '--params_override='
                        'trainer.train_steps=2,trainer.jit_compile=true')
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'step 2/2 (100%)' in first.stdout
  for name in MaskRCNN.LOSS_NAMES:
    assert name in first.stdout, name  # the progress line names each loss
  second = train_command(model_dir, data_dir, '--mode=train_and_eval',
                         '--params_override=trainer.train_steps=4')
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'at step 2.' in second.stderr
  assert 'step 4 eval: AP ' in second.stdout
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-4')

  model = factory.build_model_from_config(
      model_config.load_config(model_dir / 'params.yaml'))
  assert isinstance(model, MaskRCNN)
  initial_state = model.seed_generator.state.numpy()
  load_checkpoint(model, model_dir)
  saved = tf.train.load_checkpoint(str(model_dir))
  moving_mean = model.rpn_head.norms['3'][0].moving_mean  # a dict-held layer
  np.testing.assert_array_equal(moving_mean.numpy(), saved.get_tensor(
      'model/rpn_head/norms[3][0]/moving_mean/.ATTRIBUTES/VARIABLE_VALUE'))
  assert np.abs(moving_mean.numpy()).max() > 0  # trained, not the init
  # The sampling's random stream is saved and restored: a resumed run
  # draws on where it stopped.
  state = model.seed_generator.state.numpy()
  np.testing.assert_array_equal(state, saved.get_tensor(
      'model/seed_generator_state/.ATTRIBUTES/VARIABLE_VALUE'))
  assert not np.array_equal(state, initial_state)
