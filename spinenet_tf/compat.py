"""Keras and TensorFlow internals this project relies on, in one place.

Each has no public counterpart. All were checked on Keras 3.15.1 and
TensorFlow 2.20.0 (`CHECKED_ON`); tests/test_compat.py fails when one is
gone, and test_training_distributed checks that Keras still calls the
optimizer hook.

- `stop_optimizer_gradient_sum`: Keras's TF optimizer all-reduces (sums)
  the gradients through `_all_reduce_sum_gradients` before applying them.
  The training loop all-reduces and clips them itself, so that sum is
  turned off.
- `sublayers` / `replace_sublayer`: a model's nested layers
  (`_flatten_layers`) and swapping a built sublayer (`_tracker`), for
  BatchNorm folding.
- `process_state` / `restore_process_state`: what
  `keras.utils.set_random_seed`, `tf.config.experimental.
  enable_op_determinism` and `keras.config.set_dtype_policy` change for
  the whole process, read and put back, so a Trainer's settings end with
  it.
- `frozen_graph`: a concrete function's graph with its variables turned
  into constants (TF's `convert_variables_to_constants_v2`), for counting
  FLOPs.
- Methods our subclasses override (`OVERRIDDEN`): `FusedSGD` replaces
  Keras's `_backend_update_step` and reads `_get_variable_index`;
  `CheckpointListsMixin` and `MaskRCNN` (its seed state) extend
  `_trackable_children`. A Keras without
  them would leave the override unused without an error, so
  tests/test_compat.py checks each still exists.
- `dtype_policy_scope`: layers built inside use a dtype policy (public
  API only).
"""

import contextlib
import random

import keras
from keras.src.backend.common import global_state
from keras.src.random import seed_generator
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context as tf_context
from tensorflow.python.framework import config as tf_config
from tensorflow.python.framework import convert_to_constants

CHECKED_ON = {'keras': '3.15.1', 'tensorflow': '2.20.0'}
OPTIMIZER_ALL_REDUCE = '_all_reduce_sum_gradients'
KERAS_SEED = 'global_random_seed'  # keras.src.utils.rng_utils
# {Keras class: private methods our subclasses override or call}.
OVERRIDDEN = {keras.optimizers.SGD: ('_backend_update_step',
                                     '_get_variable_index'),
              keras.layers.Layer: ('_trackable_children',)}


def _missing(what):
  return RuntimeError(
      f'Keras {keras.__version__} / TensorFlow {tf.__version__}: {what} is '
      f'gone (spinenet_tf/compat.py was checked on {CHECKED_ON}).')


def stop_optimizer_gradient_sum(optimizer):
  """Stops `optimizer` (or the optimizer a LossScaleOptimizer wraps) from
  summing gradients across replicas: the caller has all-reduced them."""
  inner = getattr(optimizer, 'inner_optimizer', optimizer)
  if not callable(getattr(type(inner), OPTIMIZER_ALL_REDUCE, None)):
    raise _missing(f'{type(inner).__name__}.{OPTIMIZER_ALL_REDUCE}')
  setattr(inner, OPTIMIZER_ALL_REDUCE, lambda grads_and_vars: grads_and_vars)


def sublayers(model):
  """Every layer nested in `model`, depth first, without `model`."""
  layers = model._flatten_layers(include_self=False)  # pylint: disable=protected-access
  return list(layers)


def frozen_graph(concrete_function):
  """The graph of `concrete_function` with its variables as constants."""
  return convert_to_constants.convert_variables_to_constants_v2(
      concrete_function).graph


def replace_sublayer(parent, name, new):
  """Swaps the built sublayer `parent.<name>` for `new`."""
  tracker = parent._tracker  # pylint: disable=protected-access
  tracker.replace_tracked_value('layers', getattr(parent, name), new)
  setattr(parent, name, new)


def process_state():
  """The process-wide random seeds, op determinism and dtype policy."""
  return {'python': random.getstate(), 'numpy': np.random.get_state(),
          'tf_seed': tf_context.global_seed(),
          'keras_seed': global_state.get_global_attribute(KERAS_SEED),
          'keras_generator': global_state.get_global_attribute(
              seed_generator.GLOBAL_SEED_GENERATOR),
          'deterministic': tf_config.is_op_determinism_enabled(),
          'dtype_policy': keras.config.dtype_policy()}


def restore_process_state(state):
  """Puts back what `process_state()` read."""
  random.setstate(state['python'])
  np.random.set_state(state['numpy'])
  tf.random.set_seed(state['tf_seed'])
  global_state.set_global_attribute(KERAS_SEED, state['keras_seed'])
  global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR,
                                    state['keras_generator'])
  if state['deterministic']:
    tf.config.experimental.enable_op_determinism()
  else:
    tf_config.disable_op_determinism()
  keras.config.set_dtype_policy(state['dtype_policy'])


@contextlib.contextmanager
def dtype_policy_scope(dtype):
  """Layers created inside use `dtype` (None: the global policy)."""
  previous = keras.config.dtype_policy()
  if dtype is not None:
    keras.config.set_dtype_policy(dtype)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)
