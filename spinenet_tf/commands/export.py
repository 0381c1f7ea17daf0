"""Exports a detector or classifier as a SavedModel (and optionally TFLite).

  spinenet-export --config_file retinanet.yaml \
      --checkpoint model.weights.h5 --export_dir /models/retinanet/1
  spinenet-export --config_file mobile.yaml --checkpoint ckpt_dir \
      --export_dir /models/mobile/1 --tflite_file mobile.tflite
  spinenet-export ... --dtype bfloat16   # the fastest on a CPU with AMX
  spinenet-export ... --xla              # float32, XLA-compiled network

The config file (YAML):

  task: detection          # or classification
  model:
    backbone: '49'         # model id ('49S', 'mobile-49XS', ...) or spec YAML
    input_size: 640        # or [height, width]; sides divisible by 128
    num_classes: 91        # detection: background slot 0 included
    # any other keyword of build_retinanet / build_classifier, e.g.
    # num_convs: 4, activation: swish, score_threshold: 0.05

--checkpoint takes a Keras `.weights.h5` file or a TF checkpoint written by
`tf.train.Checkpoint(model=model)` (a prefix, or a directory for its latest).
The SavedModel's signatures (serving_default on uint8 images, image_bytes,
tf_example) and outputs are documented in spinenet_tf/export/saved_model.py,
the TFLite model's in spinenet_tf/export/tflite.py. The config is copied to
<export_dir>/assets.extra/model_config.yaml.

A user error (missing or bad config file, unknown model key, a checkpoint
of another architecture, an existing --export_dir or --tflite_file without
--overwrite, or with it one that is not an earlier export)
prints one line `error: ...` on stderr and exits with status 1 (2 for a flag
error); --verbose shows the trace. Export folders may be gs:// paths.
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import yaml  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags, logging  # noqa: E402

from spinenet_tf import cli, io_utils  # noqa: E402
from spinenet_tf.checkpoints import load_checkpoint  # noqa: E402
from spinenet_tf.export import model_config  # noqa: E402
from spinenet_tf.models import factory  # noqa: E402
from spinenet_tf.export.fold_batchnorm import max_abs_difference  # noqa: E402
from spinenet_tf.export.saved_model import (  # noqa: E402
    check_replaceable, export_saved_model)
from spinenet_tf.export.tflite import (  # noqa: E402
    check_tflite_destination, convert_to_tflite, write_tflite)
from spinenet_tf.training import config as config_lib  # noqa: E402
from spinenet_tf.training.averaged_weights import (  # noqa: E402
    load_averaged_weights)

FLAGS = flags.FLAGS
flags.DEFINE_string('config_file', None, 'Model config YAML (see above).')
flags.DEFINE_string('checkpoint', None, '.weights.h5 file or TF checkpoint; '
                    'without it the export has random weights.')
flags.DEFINE_string('export_dir', None, 'SavedModel directory to write.')
flags.DEFINE_string('tflite_file', None, 'Also write a TFLite model here.')
flags.DEFINE_bool('raw_weights', False, 'With a TF checkpoint of a run '
                  'with optimizer.use_ema (its params.yaml as '
                  '--config_file): export the raw weights, not their moving '
                  'average (the default: what the run evaluated).')
flags.DEFINE_bool('overwrite', False, 'Replace an existing export_dir or '
                  'tflite_file: an earlier export only (a SavedModel '
                  'folder, an empty folder, a TFLite file), never another '
                  'file or folder.')
flags.DEFINE_bool('fold_batchnorm', True, 'Fold BatchNorm into the convs.')
flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'],
                  "Compute dtype of the exported network (default: the "
                  "model's, float32); needs --fold_batchnorm.")
flags.DEFINE_bool('xla', False, 'Compile the network with XLA (each new '
                  'batch size compiles on its first call). It pays on some '
                  'CPUs and costs on others (float32, batch 1: 1.15x MG '
                  'with AMX, 0.95x on AVX-512 without; bfloat16 is '
                  'slower with it on both): measure with '
                  'scripts/benchmark.py --sections=export. Postprocessing '
                  "stays TensorFlow's fused NMS kernel.")
flags.DEFINE_integer('top_k', 5, 'Classification: top-k outputs.')
flags.mark_flag_as_required('config_file')


def _log_network_error(model, module):
  """Logs how far the exported network is from the model's."""
  images = np.random.default_rng(0).normal(
      size=(1, *model.inputs[0].shape[1:])).astype(np.float32)
  logging.info('exported network vs the model on a random image: max abs '
               'difference %.3g',
               max_abs_difference(model, module.network, images))


def load_model():
  """The model of --config_file with the weights of --checkpoint; errors
  name the flag and file."""
  config = model_config.load_config(FLAGS.config_file)
  try:
    model = factory.build_model_from_config(config)
  except (TypeError, ValueError) as e:
    raise cli.UserError(f'--config_file {FLAGS.config_file}: model: {e}'
                        ) from e
  averaged = _averaging_run(FLAGS.config_file)
  if FLAGS.raw_weights and (averaged is None or not FLAGS.checkpoint or
                            FLAGS.checkpoint.endswith('.weights.h5')):
    raise cli.UserError('--raw_weights needs a TF checkpoint (--checkpoint) '
                        'of a run with optimizer.use_ema, that run\'s '
                        'params.yaml as --config_file.')
  if not FLAGS.checkpoint:
    logging.warning('No --checkpoint: exporting random weights.')
  elif (averaged is not None and not FLAGS.raw_weights
        and not FLAGS.checkpoint.endswith('.weights.h5')):
    path = load_averaged_weights(model, FLAGS.checkpoint, averaged)
    logging.info('Exporting the moving average of the weights in %s (what '
                 'the run evaluated; --raw_weights for the raw).', path)
  else:
    load_checkpoint(model, FLAGS.checkpoint)
  return config, model


def _averaging_run(config_file):
  """The experiment config of `config_file` if it is a run's with
  optimizer.use_ema, else None."""
  data = yaml.safe_load(io_utils.read_text(config_file, 'config file'))
  optimizer = data.get('optimizer') if isinstance(data, dict) else None
  if not (isinstance(optimizer, dict) and optimizer.get('use_ema')):
    return None
  return config_lib.load_experiment(config_file)


def main(argv):
  cli.refuse_arguments(argv)
  if not FLAGS.export_dir and not FLAGS.tflite_file:
    raise cli.UserError('give --export_dir and/or --tflite_file.')
  if FLAGS.export_dir and tf.io.gfile.exists(FLAGS.export_dir):
    if not FLAGS.overwrite:
      raise cli.UserError(f'--export_dir {FLAGS.export_dir} exists; pass '
                          '--overwrite to replace it.')
    check_replaceable(FLAGS.export_dir)
  if FLAGS.tflite_file:
    check_tflite_destination(FLAGS.tflite_file, FLAGS.overwrite)
  config, model = load_model()
  if FLAGS.export_dir:
    module = export_saved_model(
        model, FLAGS.export_dir, overwrite=FLAGS.overwrite,
        fold=FLAGS.fold_batchnorm, dtype=FLAGS.dtype, jit_compile=FLAGS.xla,
        top_k=FLAGS.top_k,
        extra_files={'model_config.yaml': yaml.safe_dump(config)})
    logging.info('SavedModel written to %s', FLAGS.export_dir)
    _log_network_error(model, module)
  if FLAGS.tflite_file:
    write_tflite(convert_to_tflite(model), FLAGS.tflite_file,
                 FLAGS.overwrite)
    logging.info('TFLite model written to %s', FLAGS.tflite_file)


def run():
  """The console entry point (spinenet-export)."""
  cli.run(main, doc=__doc__)


if __name__ == '__main__':
  run()
