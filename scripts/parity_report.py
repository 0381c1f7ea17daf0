#!/usr/bin/env python3
"""Parity report: parameter counts and checkpoint-conversion error vs Model Garden.

For each variant: build the Model Garden reference with random weights and
randomized BN statistics, save a TF2 checkpoint, convert it into our model,
run both on the same images in inference mode, print a markdown table.

  python scripts/parity_report.py [--size 256] [--variants 49S,mobile-49]
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

import spinenet_tf  # noqa: E402
from spinenet_tf import cli  # noqa: E402
from spinenet_tf.export.model_garden_checkpoint import convert_checkpoint  # noqa: E402
from tests.reference import (build_reference, randomize_batch_norm,  # noqa: E402
                             save_reference_checkpoint)


def report_row(model_id, size, workdir):
  reference = build_reference(model_id, size)
  randomize_batch_norm(reference)
  path = save_reference_checkpoint(reference, os.path.join(workdir, model_id))
  ours = spinenet_tf.build_backbone(model_id, (size, size, 3))
  count = convert_checkpoint(path, ours)
  images = np.random.default_rng(0).uniform(0, 1, (2, size, size, 3)).astype('float32')
  expected, got = reference(images, training=False), ours(images, training=False)
  diff = max(float(np.abs(np.asarray(got[k]) - expected[k].numpy()).max())
             for k in expected)
  scale = max(float(np.abs(expected[k].numpy()).max()) for k in expected)
  return (f'| {model_id} | {ours.count_params():,} | {reference.count_params():,} '
          f'| {count} | {diff:.1e} | {scale:.1f} | {diff / scale:.1e} |')


def main():
  parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', type=int, default=256)
  parser.add_argument('--variants', default=','.join(spinenet_tf.MODEL_IDS))
  args = parser.parse_args()
  print(f'Conversion at {args.size}x{args.size}, batch 2, float32, inference mode.')
  print('| variant | params ours | params Model Garden | variables converted '
        '| max abs diff | max abs output | relative |')
  print('|---|---|---|---|---|---|---|')
  with tempfile.TemporaryDirectory() as workdir:
    for model_id in args.variants.split(','):
      print(report_row(model_id, args.size, workdir), flush=True)


if __name__ == '__main__':
  cli.guarded(main)()
