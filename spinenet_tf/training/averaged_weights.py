"""The weights a run evaluated: with optimizer.use_ema, the moving average.

    load_averaged_weights(model, 'runs/a', config)   # config: the run's

A training checkpoint holds the raw weights (the model) and their moving
average (the optimizer's); `Trainer.evaluate` and `best/` use the
average, so export does too (`spinenet-export --raw_weights` for the raw).
"""

import tensorflow as tf

from spinenet_tf.checkpoints import model_checkpoint
from spinenet_tf.training.optimization import build_optimizer, build_schedule


def load_averaged_weights(model, path, config):
  """Loads into `model` the moving average of its trainable weights (and
  the checkpoint's other model variables) from the TF checkpoint `path`
  (a prefix or a folder) of a run of `config` (an ExperimentConfig with
  optimizer.use_ema); returns the checkpoint read."""
  if not config.optimizer.use_ema:
    raise ValueError('the run did not average its weights (optimizer.'
                     'use_ema is false); load its checkpoint as it is.')
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise FileNotFoundError(f'no TF checkpoint in {path}.')
    path = latest
  tc = config.trainer
  optimizer = build_optimizer(
      config.optimizer, build_schedule(config.schedule, tc.train_steps),
      tc.mixed_precision)
  optimizer.build(model.trainable_variables)
  model_checkpoint(model, optimizer=optimizer).read(
      path).assert_existing_objects_matched().expect_partial()
  optimizer.finalize_variable_values(model.trainable_variables)
  return path
