#!/usr/bin/env python3
"""Write the built-in synthetic shapes detection dataset as TFRecords.

  python scripts/make_synthetic_dataset.py --output_dir /tmp/shapes
  python scripts/make_synthetic_dataset.py --output_dir /tmp/shapes \
      --num_train 2000 --num_val 200 --image_size 384 --seed 1

Then train or evaluate on it with
`build_detection_dataset('synthetic', data_dir=..., ...)` (4 class slots:
background, rectangle, ellipse, triangle).
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags  # noqa: E402

from spinenet_tf.data import synthetic_shapes  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('output_dir', None, 'Directory to write into.')
flags.DEFINE_integer('num_train', 512, 'Training images.')
flags.DEFINE_integer('num_val', 64, 'Validation images.')
flags.DEFINE_integer('image_size', 256, 'Side of the square images.')
flags.DEFINE_integer('seed', 0, 'Same seed, same files.')
flags.mark_flag_as_required('output_dir')


def main(argv):
  del argv
  files = synthetic_shapes.write_synthetic_dataset(
      FLAGS.output_dir, FLAGS.num_train, FLAGS.num_val, FLAGS.image_size,
      FLAGS.seed)
  for split, paths in files.items():
    print(f'{split}: {len(paths)} file(s), e.g. {paths[0]}')


if __name__ == '__main__':
  app.run(main)
