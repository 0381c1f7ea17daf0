"""The training command: absl flags -> config, strategy, task, trainer.

    python scripts/train.py --experiment=demo_retinanet_synthetic \
      --model_dir=/tmp/run --data_dir=/tmp/shapes \
      --params_override='trainer.train_steps=50'

A user error (flags, experiment, config, data, checkpoints, a NaN stop) is
one line `error: ...` on stderr and exit status 1 (2 for flags); --verbose
shows the trace (spinenet_tf/cli.py). params.yaml is written to model_dir
only once the run has restored its checkpoint and run its first steps, so a
run that fails to start leaves the folder as it was.
"""

import os

from absl import app, flags, logging
import tensorflow as tf

from spinenet_tf import cli, configs
from spinenet_tf.training import config as config_lib
from spinenet_tf.training import strategy as strategy_lib
from spinenet_tf.training.tasks import build_task
from spinenet_tf.training.trainer import Trainer

MODES = ('train', 'eval', 'train_and_eval', 'continuous_eval')

flags.DEFINE_string('experiment', None,
                    'A shipped experiment: a name in spinenet_tf/configs/ '
                    '(without .yaml).')
flags.DEFINE_string('config_file', None, 'A YAML experiment file.')
flags.DEFINE_multi_string('params_override', [],
                          "'dotted.key=value,...' (YAML values) or a YAML "
                          'mapping; applied after the file.')
flags.DEFINE_enum('mode', 'train', MODES, 'What to run.')
flags.DEFINE_string('model_dir', None, 'Checkpoints and summaries (local or '
                    'gs://).')
flags.DEFINE_enum('strategy', 'one_device', strategy_lib.STRATEGIES,
                  'tf.distribute strategy.')
flags.DEFINE_string('tpu', None, "--strategy=tpu: 'local' (the default), "
                    "the TPU of this TPU VM; remote TPUs are refused.")
flags.DEFINE_integer('num_gpus', 0, 'GPUs for --strategy=mirrored (0: all).')
flags.DEFINE_enum('mixed_precision', None,
                  ['float32', 'bfloat16', 'float16', 'float64'],
                  'Overrides trainer.mixed_precision (float64: a slow '
                  'reference precision for numerics checks).')
flags.DEFINE_string('data_dir', None, 'Data directory (TFDS, synthetic).')
flags.DEFINE_float('eval_timeout', None, 'continuous_eval: seconds to wait '
                   'for a new checkpoint before stopping.')
FLAGS = flags.FLAGS


def experiment_path(experiment, config_file):
  if bool(experiment) == bool(config_file):
    raise app.UsageError('give exactly one of --experiment, --config_file.')
  if config_file:
    if not tf.io.gfile.exists(config_file):
      raise app.UsageError(f'--config_file {config_file!r} does not exist.')
    return config_file
  if experiment not in configs.names():
    raise app.UsageError(f'unknown --experiment {experiment!r}; known: '
                         f'{configs.names()}.')
  return configs.path(experiment)


def main(argv):
  del argv
  if not FLAGS.model_dir:
    raise app.UsageError('--model_dir is required.')
  overrides = list(FLAGS.params_override)
  if FLAGS.mixed_precision:
    overrides.append(f'trainer.mixed_precision={FLAGS.mixed_precision}')
  config = config_lib.load_experiment(
      experiment_path(FLAGS.experiment, FLAGS.config_file), overrides)
  if FLAGS.mode in ('train', 'train_and_eval'):
    config_lib.check_same_model(config, FLAGS.model_dir)
  strategy = strategy_lib.build_strategy(FLAGS.strategy, FLAGS.tpu,
                                         FLAGS.num_gpus)
  with Trainer(config, build_task(config, FLAGS.data_dir), strategy,
               FLAGS.model_dir) as trainer:
    logging.info('Mode %s, %d replicas.', FLAGS.mode,
                 strategy.num_replicas_in_sync)
    if FLAGS.mode in ('train', 'train_and_eval'):
      def save_params():
        # Once the run has started: a failed start rewrites nothing.
        if trainer.is_chief:
          config_lib.save_experiment(
              config, os.path.join(FLAGS.model_dir, config_lib.PARAMS_FILE))
      trainer.train(evaluate=FLAGS.mode == 'train_and_eval',
                    on_start=save_params)
    elif FLAGS.mode == 'eval':
      trainer.restore()
      if trainer.last_good_checkpoint is None:
        raise app.UsageError(f'--mode=eval: no checkpoint in '
                             f'{FLAGS.model_dir}.')
      trainer.evaluate()
    else:
      trainer.continuous_evaluate(FLAGS.eval_timeout)


def run():
  """Console entry point."""
  cli.run(main)


if __name__ == '__main__':
  run()
