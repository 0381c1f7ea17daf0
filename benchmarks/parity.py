"""Parity report: parameter counts and checkpoint-conversion error vs Model Garden.

For each variant: build the Model Garden reference with random weights and
randomized BN statistics, save a TF2 checkpoint, convert it into our model,
run both on the same images in inference mode, print a markdown table.

  python scripts/parity_report.py [--size 256] [--variants 49S,mobile-49]
"""
import os
import tempfile

import numpy as np
from absl import flags

import spinenet_tf
from spinenet_tf import cli
from benchmarks.model_garden import (build_reference,
                                                 randomize_batch_norm,
                                                 save_reference_checkpoint)
from spinenet_tf.export.model_garden_checkpoint import convert_checkpoint

FLAGS = flags.FLAGS


def conversion_error(model_id, size, workdir):
  """Converts a Model Garden `model_id` with random weights and BN
  statistics into ours and runs both on 2 random images (inference mode):
  {'params', 'reference_params', 'converted' (variables), 'levels' (of
  each output), 'diff' (max |ours - reference|), 'scale' (max |reference|),
  'ours' (the converted model)}."""
  reference = build_reference(model_id, size)
  randomize_batch_norm(reference)
  path = save_reference_checkpoint(reference, os.path.join(workdir, model_id))
  ours = spinenet_tf.build_backbone(model_id, (size, size, 3))
  converted = convert_checkpoint(path, ours)
  images = np.random.default_rng(0).uniform(
      0, 1, (2, size, size, 3)).astype('float32')
  expected, got = reference(images, training=False), ours(images, training=False)
  return {
      'params': ours.count_params(),
      'reference_params': reference.count_params(),
      'converted': converted, 'levels': (sorted(got), sorted(expected)),
      'diff': max(float(np.abs(np.asarray(got[k]) - expected[k].numpy()).max())
                  for k in expected),
      'scale': max(float(np.abs(expected[k].numpy()).max()) for k in expected),
      'ours': ours}


def report_row(model_id, size, workdir):
  r = conversion_error(model_id, size, workdir)
  return (f'| {model_id} | {r["params"]:,} | {r["reference_params"]:,} '
          f'| {r["converted"]} | {r["diff"]:.1e} | {r["scale"]:.1f} '
          f'| {r["diff"] / r["scale"]:.1e} |')


def define_flags():
  """The report's flags (defined by `run`, not on import)."""
  flags.DEFINE_integer('size', 256, 'Square input size (a multiple of 128).',
                       lower_bound=128)
  flags.DEFINE_list('variants', list(spinenet_tf.MODEL_IDS),
                    'SpineNet variants to convert and compare.')


def main(argv):
  cli.refuse_arguments(argv)
  unknown = sorted(set(FLAGS.variants) - set(spinenet_tf.MODEL_IDS))
  if unknown:
    raise cli.UserError(f'--variants: unknown {unknown}; expected some of '
                        f'{", ".join(spinenet_tf.MODEL_IDS)}.')
  size = FLAGS.size
  print(f'Conversion at {size}x{size}, batch 2, float32, inference mode.')
  print('| variant | params ours | params Model Garden | variables converted '
        '| max abs diff | max abs output | relative |')
  print('|---|---|---|---|---|---|---|')
  with tempfile.TemporaryDirectory() as workdir:
    for model_id in FLAGS.variants:
      print(report_row(model_id, size, workdir), flush=True)


def run():
  define_flags()
  cli.run(main, doc=__doc__)
