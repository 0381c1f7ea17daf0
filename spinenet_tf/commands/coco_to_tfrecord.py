"""Convert COCO-format annotations and their pictures to detection TFRecords.

  spinenet-coco-to-tfrecord --annotation_file=instances.json \
      --image_dir=pictures/ --output_prefix=records/train [--include_masks]

writes records/train-0000K-of-0000N.tfrecord (Model Garden's tf.Example
keys), records/train_label_map.json (class id -> name; training,
evaluation and predict read it) and records/train_report.json (what was
skipped, clipped or converted, with the first examples of each kind).

Category ids are kept as the JSON has them (COCO's 1..90 stay 1..90, the
ids Model Garden's checkpoints predict); --remap_categories numbers them
1..K in id order instead (the label map keeps the JSON's ids, so
evaluation against the JSON still works). Bad annotations are skipped and
counted, never fatal; the last line sums them up.
"""

from absl import flags

from spinenet_tf import cli
from spinenet_tf.data import coco_converter

FLAGS = flags.FLAGS
flags.DEFINE_string('annotation_file', None, 'COCO-format JSON (images, '
                    'annotations, categories).')
flags.DEFINE_string('image_dir', None, 'Folder that the JSON\'s file_names '
                    'are relative to.')
flags.DEFINE_string('output_prefix', None, 'Shards <prefix>-0000K-of-0000N'
                    '.tfrecord; label map and report beside them.')
flags.DEFINE_bool('include_masks', False, 'Also write the instance masks '
                  '(image/object/mask, one PNG per object; for Mask R-CNN).')
flags.DEFINE_bool('remap_categories', False, 'Number the categories 1..K in '
                  'id order (default: keep the JSON\'s ids, as COCO users '
                  'expect).')
flags.DEFINE_integer('num_shards', 0, 'Output files (0: one per 1,000 '
                     'images).', lower_bound=0)
flags.DEFINE_integer('num_workers', 0, 'Processes writing shards (0: one per '
                     'core, at most one per shard).', lower_bound=0)
flags.DEFINE_bool('overwrite', False, 'Replace earlier outputs of '
                  '--output_prefix.')
for _name in ('annotation_file', 'image_dir', 'output_prefix'):
  flags.mark_flag_as_required(_name)


def main(argv):
  cli.refuse_arguments(argv)
  summary = coco_converter.convert_coco(
      FLAGS.annotation_file, FLAGS.image_dir, FLAGS.output_prefix,
      include_masks=FLAGS.include_masks,
      remap_categories=FLAGS.remap_categories, num_shards=FLAGS.num_shards,
      num_workers=FLAGS.num_workers, overwrite=FLAGS.overwrite)
  print(coco_converter.summary_line(
      summary, coco_converter.output_paths(FLAGS.output_prefix)['report']))


def run():
  cli.run(main, doc=__doc__)
