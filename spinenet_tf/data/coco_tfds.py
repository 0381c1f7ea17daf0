"""COCO from TFDS (`coco/2017`) as example dicts (see `detection_records`).

TFDS numbers COCO's 80 categories 0..79 in the order of the annotation
file's category list, which is sorted by COCO category id; COCO ids run
1..90 with 10 gaps. `COCO_CATEGORY_IDS[label]` maps a TFDS label back to the
COCO category id, so TFDS and Model Garden's COCO TFRecords share class ids
1..90 (91 class slots with background 0) and COCO evaluation sees the real
category ids. (Model Garden's own TFDS decoder keeps 0..79, where 0, person,
collides with background.)

Images are read undecoded (`tfds.decode.SkipDecoding`) so the parser decodes
only the window it keeps, and a corrupt image is skipped, not fatal.
"""

import tensorflow as tf
import tensorflow_datasets as tfds

COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42,
    43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90)


def load_records(name='coco/2017', split='train', data_dir=None,
                 shuffle_files=False, seed=None, input_context=None):
  """TFDS features of `name` with the image left encoded, plus 'tfds_id'.

  Never downloads: prepare the data first (`tfds build coco/2017
  --data_dir=DIR`).
  """
  return tfds.load(
      name, split=split, data_dir=data_dir, download=False,
      shuffle_files=shuffle_files,
      decoders={'image': tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=True,
                                  input_context=input_context))


def to_example(features):
  """TFDS COCO features -> the example dict. Labels outside 0..79 become -1
  (dropped by the parser); per-object lists are cut to the shortest."""
  objects = features['objects']
  fields = [objects[k] for k in ('bbox', 'label', 'is_crowd', 'area')]
  n = tf.reduce_min([tf.shape(x)[0] for x in fields])
  labels = tf.cast(objects['label'][:n], tf.int32)
  in_range = (labels >= 0) & (labels < len(COCO_CATEGORY_IDS))
  classes = tf.where(in_range, tf.gather(COCO_CATEGORY_IDS,
                                         tf.where(in_range, labels, 0)), -1)
  return {
      'encoded': features['image'],
      'source_id': tf.strings.as_string(features['image/id']),
      'boxes': objects['bbox'][:n],
      'classes': classes,
      'is_crowd': objects['is_crowd'][:n],
      'areas': tf.cast(objects['area'][:n], tf.float32),
  }
