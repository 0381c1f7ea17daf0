"""Write a built-in synthetic detection dataset as TFRecords.

  spinenet-make-dataset --output_dir /tmp/shapes
  spinenet-make-dataset --output_dir /tmp/scenes \
      --dataset scenes
  spinenet-make-dataset --output_dir /tmp/shapes \
      --num_train 2000 --num_val 200 --image_size 384 --seed 1
  spinenet-make-dataset --output_dir /tmp/shapes \
      --sample_sizes 192x256,300x200
  spinenet-make-dataset --output_dir /tmp/shapes_coco --format coco

--format coco writes the same scenes as a COCO-format dataset instead:
JPEG folders <output_dir>/train/, <output_dir>/validation/ and
<output_dir>/annotations/instances_{train,validation}.json with polygon
(or, for regions with holes, RLE) segmentations: the input of
spinenet-coco-to-tfrecord, as a user's own labelled data would be.

--sample_sizes also writes PNG scenes of those sizes (HxW) to
<output_dir>/samples/, drawn apart from the splits: pictures to run
scripts/predict.py on.

Then train or evaluate on it with
`build_detection_dataset('synthetic', data_dir=..., ...)` (4 class slots:
background, rectangle, ellipse, triangle), or for --dataset scenes (the
harder `synthetic_scenes`: 12 textured shape classes, 2..30 objects)
`build_detection_dataset('synthetic_scenes', ...)` (13 class slots).
"""
import os

from absl import app, flags

from spinenet_tf import cli

from spinenet_tf.data import synthetic_coco, synthetic_scenes, synthetic_shapes

DATASETS = {'shapes': synthetic_shapes, 'scenes': synthetic_scenes}
FLAGS = flags.FLAGS
flags.DEFINE_enum('dataset', 'shapes', list(DATASETS),
                  'shapes: 3 flat shape classes (the quickstart); scenes: '
                  '12 textured shape classes in cluttered scenes.')
flags.DEFINE_enum('format', 'tfrecord', ['tfrecord', 'coco'],
                  'tfrecord: shards to train on directly; coco: JPEG '
                  'folders and COCO annotation JSONs.')
flags.DEFINE_string('output_dir', None, 'Directory to write into.')
flags.DEFINE_integer('num_train', 512, 'Training images.')
flags.DEFINE_integer('num_val', 64, 'Validation images.')
flags.DEFINE_integer('image_size', 256, 'Side of the square images.')
flags.DEFINE_integer('seed', 0, 'Same seed, same files.')
flags.DEFINE_list('sample_sizes', [], 'HxW sizes of PNG scenes to write to '
                  '<output_dir>/samples/.')
flags.mark_flag_as_required('output_dir')


def parse_size(text):
  """'192x256' -> (192, 256)."""
  try:
    height, width = (int(side) for side in text.lower().split('x'))
  except ValueError:
    raise app.UsageError(f'--sample_sizes: {text!r} is not HxW.') from None
  if height < 1 or width < 1:
    raise app.UsageError(f'--sample_sizes: {text!r} has a side < 1.')
  return height, width


def main(argv):
  cli.refuse_arguments(argv)
  module = DATASETS[FLAGS.dataset]
  if FLAGS.format == 'coco':
    files = synthetic_coco.write_coco_dataset(
        FLAGS.output_dir, module, FLAGS.num_train, FLAGS.num_val,
        FLAGS.image_size, FLAGS.seed)
    for split, path in files.items():
      print(f'{split}: {path} (pictures in '
            f'{os.path.join(FLAGS.output_dir, split)})')
  else:
    files = module.write_synthetic_dataset(
        FLAGS.output_dir, FLAGS.num_train, FLAGS.num_val, FLAGS.image_size,
        FLAGS.seed)
    for split, paths in files.items():
      print(f'{split}: {len(paths)} file(s), e.g. {paths[0]}')
  if FLAGS.sample_sizes:
    paths = module.write_sample_images(
        os.path.join(FLAGS.output_dir, 'samples'),
        [parse_size(text) for text in FLAGS.sample_sizes], FLAGS.seed)
    print(f'samples: {len(paths)} PNG file(s) in {os.path.dirname(paths[0])}')


def run():
  cli.run(main, doc=__doc__)
