"""Detection tf.Examples in Model Garden's format: write and decode.

Keys (those Model Garden's `TfExampleDecoder` reads): image/encoded,
image/height, image/width, image/source_id, image/object/bbox/ymin|xmin|ymax|
xmax (normalised to [0, 1]), image/object/class/label, image/object/is_crowd,
image/object/area; and, where written, image/object/mask (one PNG per
instance, 0/1 pixels, the image's size), image/filename, image/format.

`decode_example` returns the *example dict* that every source (TFRecord,
TFDS, synthetic) produces and `detection_parser` consumes:

  encoded    string []       the image file (JPEG, PNG, GIF, BMP); the parser
                             decodes it, and only the window it needs
  source_id  string []       image id (the COCO image id, in decimal); a
                             record without one gets a 63-bit hash of its
                             image bytes (in decimal; records with identical
                             image bytes share it: `CocoEvaluator` reports
                             and renumbers such duplicates)
  boxes      float32 [N, 4]  (ymin, xmin, ymax, xmax) normalised, as stored
  classes    int32 [N]       category ids (COCO: 1..90)
  is_crowd   bool [N]
  areas      float32 [N]     in pixels of the original image; -1 if unknown

Decoding never fails on ragged or missing per-object lists: they are cut or
padded to the number of boxes. Checking boxes and classes is the parser's job.
"""

import os
import uuid

import numpy as np
import tensorflow as tf

from spinenet_tf import io_utils

_COORDS = ('ymin', 'xmin', 'ymax', 'xmax')
NO_SOURCE_ID_BUCKETS = 2**63 - 1  # ids 0..2**63-2 for records without one
_FEATURES = {
    'image/encoded': tf.io.FixedLenFeature((), tf.string, ''),
    'image/source_id': tf.io.FixedLenFeature((), tf.string, ''),
    'image/object/class/label': tf.io.VarLenFeature(tf.int64),
    'image/object/is_crowd': tf.io.VarLenFeature(tf.int64),
    'image/object/area': tf.io.VarLenFeature(tf.float32),
    'image/object/mask': tf.io.VarLenFeature(tf.string),
    **{f'image/object/bbox/{c}': tf.io.VarLenFeature(tf.float32)
       for c in _COORDS},
}


def _bytes(values):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def make_example(encoded_image, height, width, boxes, classes, source_id='',
                 is_crowd=None, areas=None, masks=None, filename=None,
                 image_format=None):
  """A detection tf.train.Example.

  Args:
    encoded_image: bytes of a JPEG/PNG/... file.
    height, width: the image size in pixels.
    boxes: [N, 4] (ymin, xmin, ymax, xmax) normalised to [0, 1].
    classes: [N] category ids.
    source_id: image id (str or int).
    is_crowd: optional [N] booleans (default all False).
    areas: optional [N] areas in pixels (default: box areas).
    masks: optional [N] PNG files of the instance masks.
    filename, image_format: optional image/filename, image/format.
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  if areas is None:
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) *
             height * width)
  if is_crowd is None:
    is_crowd = np.zeros(len(boxes), np.int64)
  feature = {
      'image/encoded': _bytes([encoded_image]),
      'image/height': _ints([int(height)]),
      'image/width': _ints([int(width)]),
      'image/source_id': _bytes([str(source_id).encode()]),
      'image/object/class/label': _ints(np.asarray(classes, np.int64)),
      'image/object/is_crowd': _ints(np.asarray(is_crowd, np.int64)),
      'image/object/area': _floats(np.asarray(areas, np.float32)),
      **{f'image/object/bbox/{c}': _floats(boxes[:, i])
         for i, c in enumerate(_COORDS)},
  }
  if masks is not None:
    feature['image/object/mask'] = _bytes(list(masks))
  if filename is not None:
    feature['image/filename'] = _bytes([filename.encode()])
  if image_format is not None:
    feature['image/format'] = _bytes([image_format.encode()])
  return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_paths(prefix, num_shards):
  """`{prefix}-00000-of-0000N.tfrecord`, ... (Model Garden's names)."""
  return [f'{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord'
          for i in range(num_shards)]


class AtomicRecordWriter:
  """A TFRecordWriter that writes `path` under a temporary name and renames
  it on `close()`: a killed writer leaves no file under `path`, only the
  `.tmp-` file (`io_utils.TMP_MARK`). A `with` block that raises removes
  the temporary file."""

  def __init__(self, path):
    self.path = path
    self._tmp = f'{path}{io_utils.TMP_MARK}{uuid.uuid4().hex}'
    self._writer = tf.io.TFRecordWriter(self._tmp)

  def write(self, record):
    self._writer.write(record)

  def close(self):
    self._writer.close()
    tf.io.gfile.rename(self._tmp, self.path, overwrite=True)

  def abort(self):
    self._writer.close()
    if tf.io.gfile.exists(self._tmp):
      tf.io.gfile.remove(self._tmp)

  def __enter__(self):
    return self

  def __exit__(self, error_type, *_):
    if error_type is None:
      self.close()
    else:
      self.abort()


def write_tfrecords(prefix, examples, num_shards=1):
  """Writes tf.Examples (or serialized bytes) round-robin into shards
  `{prefix}-00000-of-0000N.tfrecord` (making the folder); returns the file
  paths. Each shard appears under its name only once all are written (see
  `AtomicRecordWriter`); an error or a kill leaves none."""
  paths = shard_paths(prefix, num_shards)
  if os.path.dirname(prefix):
    tf.io.gfile.makedirs(os.path.dirname(prefix))
  writers = [AtomicRecordWriter(path) for path in paths]
  try:
    for i, example in enumerate(examples):
      if isinstance(example, tf.train.Example):
        example = example.SerializeToString()
      writers[i % num_shards].write(example)
  except BaseException:
    for writer in writers:
      writer.abort()
    raise
  for writer in writers:
    writer.close()
  return paths


def _fit(values, n, default):
  """values[:n], padded with `default` to length n."""
  values = values[:n]
  return tf.concat([values, tf.fill([n - tf.shape(values)[0]], default)], 0)


def decode_example(serialized):
  """A serialized tf.Example -> the example dict (see the module doc)."""
  parsed = tf.io.parse_single_example(serialized, _FEATURES)
  dense = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
           for k, v in parsed.items()}
  coords = [dense[f'image/object/bbox/{c}'] for c in _COORDS]
  labels = dense['image/object/class/label']
  n = tf.reduce_min([tf.size(x) for x in coords + [labels]])
  encoded = dense['image/encoded']
  source_id = dense['image/source_id']
  # Without a source_id: a hash of the image bytes, as Model Garden does,
  # but 63 bits instead of its 22 (with 5,000 images, 22 bits collide with
  # probability ~0.95; 63 bits ~1e-12).
  source_id = tf.cond(
      tf.strings.length(source_id) > 0, lambda: source_id,
      lambda: tf.strings.as_string(
          tf.strings.to_hash_bucket_fast(encoded, NO_SOURCE_ID_BUCKETS)))
  return {
      'encoded': encoded,
      'source_id': source_id,
      'boxes': tf.stack([c[:n] for c in coords], axis=-1),
      'classes': tf.cast(labels[:n], tf.int32),
      'is_crowd': _fit(dense['image/object/is_crowd'], n,
                       tf.constant(0, tf.int64)) > 0,
      'areas': _fit(dense['image/object/area'], n, -1.0),
      'masks': dense['image/object/mask'],
  }

