"""The Keras and TF internals in spinenet_tf/compat.py still exist, and
a Trainer's process-wide settings (seeds, op determinism, dtype policy)
end with it."""
import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf import compat
from spinenet_tf.training import config as config_lib
from spinenet_tf.training.strategy import build_strategy
from spinenet_tf.training.tasks import build_task
from spinenet_tf.training.trainer import Trainer


def test_every_overridden_keras_method_still_exists():
  for cls, names in compat.OVERRIDDEN.items():
    for name in names:
      assert callable(getattr(cls, name, None)), (
          f'Keras {keras.__version__}: {cls.__name__}.{name}')


def test_sublayers_and_replace_sublayer():
  inner = keras.Sequential([keras.layers.Dense(2, name='a')], name='inner')
  model = keras.Sequential([inner, keras.layers.Dense(1, name='b')])
  model.build((None, 3))
  names = [layer.name for layer in compat.sublayers(model)
           if not isinstance(layer, keras.layers.InputLayer)]
  assert names == ['inner', 'a', 'b']

  class Holder(keras.layers.Layer):

    def __init__(self):
      super().__init__()
      self.unit = keras.layers.Dense(2)

    def call(self, x):
      return self.unit(x)

  holder = Holder()
  holder(tf.zeros([1, 3]))
  new = keras.layers.Identity()
  compat.replace_sublayer(holder, 'unit', new)
  assert holder.unit is new and compat.sublayers(holder) == [new]
  assert not holder.weights  # the old Dense is no longer tracked


def _draws():
  return (random.random(), float(np.random.rand()),
          float(tf.random.uniform([])),
          float(keras.random.uniform([])))


def test_process_state_is_put_back_whole():
  before = compat.process_state()
  keras.utils.set_random_seed(3)
  expected = _draws()
  keras.utils.set_random_seed(3)
  state = compat.process_state()
  keras.utils.set_random_seed(99)
  tf.config.experimental.enable_op_determinism()
  keras.config.set_dtype_policy('mixed_bfloat16')
  compat.restore_process_state(state)
  assert keras.config.dtype_policy().name == state['dtype_policy'].name
  assert _draws()[:2] == expected[:2]  # Python and NumPy continue exactly
  compat.restore_process_state(before)
  assert (compat.process_state()['deterministic'] ==
          before['deterministic'])


@pytest.mark.timeout(300)
def test_a_closed_trainer_leaves_the_process_as_it_found_it(tmp_path):
  """seed, deterministic and mixed_precision hold while the trainer lives
  (a search runs many trials in one process) and end with close()."""
  config = config_lib.config_from_dict({
      'task': 'classification',
      'model': {'backbone': 'mobile-49XS', 'input_size': 128,
                'num_classes': 3},
      'train_data': {'source': 'i_naturalist2017'},
      'eval_data': {'source': 'i_naturalist2017'},
      'trainer': {'seed': 5, 'deterministic': True,
                  'mixed_precision': 'bfloat16', 'best_metric': None}})
  keras.config.set_dtype_policy('float32')
  random.seed(1)
  before = compat.process_state()
  assert not before['deterministic'] and before['tf_seed'] != 5
  expected_next = random.random()
  random.setstate(before['python'])
  with Trainer(config, build_task(config), build_strategy('one_device'),
               str(tmp_path / 'run')) as trainer:
    assert keras.config.dtype_policy().name == 'mixed_bfloat16'
    assert compat.process_state()['deterministic']
    assert trainer.model.dtype_policy.name == 'mixed_bfloat16'
  after = compat.process_state()
  assert after['dtype_policy'].name == 'float32'
  assert not after['deterministic']
  assert (after['tf_seed'], after['keras_seed']) == (
      before['tf_seed'], before['keras_seed'])
  assert random.random() == expected_next
