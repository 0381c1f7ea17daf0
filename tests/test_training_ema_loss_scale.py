"""The loop's EMA evaluation and float16 loss scaling, on a tiny classifier.

- optimizer.use_ema: `Trainer.evaluate` scores the exponential moving
  average of the weights (Keras's rule: the first step copies the weights,
  then avg = m * avg + (1 - m) * w), and the trained weights are back in
  place afterwards.
- trainer.mixed_precision=float16: the optimizer scales the loss; a step
  whose scaled gradients overflow is skipped (weights unchanged, the
  optimizer's iterations too) and the scale is halved; a step that fits
  updates the weights and keeps the scale.

Both also under MirroredStrategy on 2 logical CPUs (in a subprocess running
this file: logical devices must be set before TensorFlow starts), where the
two replicas must also hold the same weights and scale.
"""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.training import config as config_lib
from spinenet_tf.training import strategy as strategy_lib
from spinenet_tf.training.tasks import ClassificationTask
from spinenet_tf.training.trainer import Trainer

BATCH, SIZE, NUM_CLASSES = 4, 128, 3
ROOT = os.path.join(os.path.dirname(__file__), '..')


class RandomImages(ClassificationTask):
  """A fixed batch of random images and labels; `evaluate` records the
  weights it is called with instead of computing metrics."""

  def train_dataset(self, input_context=None):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype('float32')
    labels = rng.integers(0, NUM_CLASSES, BATCH).astype('int32')
    return tf.data.Dataset.from_tensors((images, labels)).repeat()

  def eval_dataset(self):
    return None

  def evaluate(self, model, dataset, steps=0):
    self.evaluated_weights = [v.numpy() for v in model.trainable_variables]
    return {'top_1_accuracy': 0.0}


def trainer_factory(model_dir, strategy_name='one_device'):
  """make(precision, **optimizer) -> (trainer, step): step() runs one loop
  step and returns the weights (asserting the replicas agree)."""
  def make(precision='float32', **optimizer):
    config = config_lib.config_from_dict({
        'task': 'classification',
        'model': {'backbone': 'mobile-49XS', 'input_size': SIZE,
                  'num_classes': NUM_CLASSES},
        'train_data': {'source': 'i_naturalist2017',
                       'global_batch_size': BATCH},
        'eval_data': {'source': 'i_naturalist2017'},
        'optimizer': {'type': 'sgd', 'momentum': 0.0, **optimizer},
        'schedule': {'learning_rate': 0.5},
        'trainer': {'train_steps': 10, 'steps_per_loop': 1, 'seed': 0,
                    'mixed_precision': precision, 'best_metric': None}})
    strategy = strategy_lib.build_strategy(strategy_name)
    trainer = Trainer(config, RandomImages(config), strategy, model_dir)
    iterator = iter(strategy.distribute_datasets_from_function(
        trainer.task.train_dataset))
    loop = trainer.train_loop_fn()

    def step():
      means, finite = loop(iterator, tf.constant(1))
      assert bool(finite), means
      assert_replicas_agree(trainer)
      return [v.numpy() for v in trainer.model.trainable_variables]
    return trainer, step
  return make


def assert_replicas_agree(trainer):
  optimizer = trainer.optimizer
  variables = [*trainer.model.variables,
               *getattr(optimizer, 'variables', [])]
  for v in variables:
    values = [t.numpy() for t in
              trainer.strategy.experimental_local_results(v)]
    for value in values[1:]:
      np.testing.assert_array_equal(value, values[0], err_msg=v.name)


@pytest.fixture
def make_trainer(tmp_path):
  """Builds a Trainer; restores Keras's float32 policy afterwards."""
  yield trainer_factory(str(tmp_path / 'run'))
  keras.mixed_precision.set_global_policy('float32')


def test_evaluate_uses_the_moving_average_then_restores(make_trainer):
  momentum = 0.5
  trainer, step = make_trainer(use_ema=True, ema_momentum=momentum)
  weights = [step() for _ in range(3)]
  expected = weights[0]
  for w in weights[1:]:
    expected = [momentum * a + (1 - momentum) * b for a, b in zip(expected, w)]

  trainer.evaluate()

  evaluated = trainer.task.evaluated_weights
  moved = 0
  for got, want, last in zip(evaluated, expected, weights[-1]):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    moved += not np.allclose(want, last)
  assert moved > 0  # the average is not the last weights
  for v, last in zip(trainer.model.trainable_variables, weights[-1]):
    np.testing.assert_array_equal(v.numpy(), last)


def _export(model_dir, *flags):
  """The logits of an export (scripts/export.py, a subprocess) of the
  run's params.yaml with `flags`, on a fixed picture."""
  export_dir = os.path.join(model_dir, f'export_{len(os.listdir(model_dir))}')
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'export.py'),
       f'--config_file={model_dir}/params.yaml', f'--export_dir={export_dir}',
       '--fold_batchnorm=false', *flags], capture_output=True, text=True,
      timeout=300, env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 0, result.stderr[-3000:]
  picture = np.random.default_rng(1).integers(0, 255, (1, SIZE, SIZE, 3))
  serve = tf.saved_model.load(export_dir).signatures['serving_default']
  return serve(tf.constant(picture, tf.uint8))['logits'].numpy()


def test_export_holds_the_weights_the_run_evaluated(make_trainer, tmp_path):
  # Before: export read the raw weights of the checkpoint, while the run
  # evaluated (and kept in best/) their moving average.
  trainer, step = make_trainer(use_ema=True, ema_momentum=0.5)
  for _ in range(3):
    step()
  trainer.manager.save(checkpoint_number=3)
  trainer.evaluate()
  model_dir = trainer.model_dir
  config_lib.save_experiment(trainer.config, f'{model_dir}/params.yaml')
  model = trainer.task.build_model()
  model.set_weights(trainer.model.get_weights())
  for v, value in zip(model.trainable_variables,
                      trainer.task.evaluated_weights):
    v.assign(value)
  model.save_weights(str(tmp_path / 'evaluated.weights.h5'))

  exported = _export(model_dir, f'--checkpoint={model_dir}')
  evaluated = _export(model_dir,
                      f'--checkpoint={tmp_path}/evaluated.weights.h5')
  raw = _export(model_dir, f'--checkpoint={model_dir}', '--raw_weights')
  np.testing.assert_allclose(exported, evaluated, rtol=1e-5, atol=1e-5)
  assert np.abs(raw - evaluated).max() > 1e-3


def _unchanged(weights, others):
  return all(np.array_equal(a, b) for a, b in zip(weights, others))


def test_float16_skips_overflowing_steps_and_halves_the_scale(make_trainer):
  trainer, step = make_trainer('float16')
  optimizer = trainer.optimizer
  assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
  assert trainer.model.layers[-1].compute_dtype == 'float16'
  weights = [v.numpy() for v in trainer.model.trainable_variables]
  # At 128x128 the level-7 BatchNorm normalises 4 values (1x1 maps), so
  # the random-init gradients are large: the first steps overflow float16
  # at the initial scale 2**15 and are skipped until the scale fits.
  for _ in range(20):
    scale = float(optimizer.dynamic_scale.numpy())
    after = step()
    if not _unchanged(after, weights):
      break
    assert float(optimizer.dynamic_scale.numpy()) == scale / 2
  assert not _unchanged(after, weights), 'no step was applied'
  assert float(optimizer.dynamic_scale.numpy()) == scale
  assert int(optimizer.iterations.numpy()) == 1  # skipped steps do not count

  optimizer.dynamic_scale.assign(1e30)  # every float16 gradient overflows
  assert _unchanged(step(), after)
  assert float(optimizer.dynamic_scale.numpy()) == pytest.approx(5e29)


def test_ema_and_float16_under_mirrored_two_cpus(tmp_path):
  """The same two tests, run by a MirroredStrategy over 2 logical CPUs."""
  result = subprocess.run(
      [sys.executable, __file__, str(tmp_path)], capture_output=True,
      text=True, timeout=300,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2',
           'PYTHONPATH': os.path.join(os.path.dirname(__file__), '..')})
  assert result.returncode == 0 and 'MIRRORED OK' in result.stdout, (
      result.stderr[-3000:])


def _mirrored_main(model_dir):
  strategy_lib.use_logical_cpus(2)
  assert strategy_lib.build_strategy('mirrored').num_replicas_in_sync == 2
  test_evaluate_uses_the_moving_average_then_restores(
      trainer_factory(model_dir + '/ema', 'mirrored'))
  test_float16_skips_overflowing_steps_and_halves_the_scale(
      trainer_factory(model_dir + '/float16', 'mirrored'))
  print('MIRRORED OK')


if __name__ == '__main__':
  _mirrored_main(sys.argv[1])
