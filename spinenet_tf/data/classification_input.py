"""Image classification batches from TFDS: iNaturalist 2017 / 2021, ImageNet.

    ds = build_classification_dataset('imagenet2012', 'train', is_training=True,
                                      image_size=256, global_batch_size=1024,
                                      data_dir='/data/tfds')
    images, labels = next(iter(ds))  # float32 [1024, 256, 256, 3]; int32 [1024]

Path of a record: TFDS (image left encoded; files sharded by `input_context`)
-> shuffle (training) -> decode only the crop window (a random resized crop
for training, the padded center crop for evaluation) and resize -> a record
whose image cannot be decoded is skipped and counted (`SkipCounter`) ->
random flip and RandAugment (training) -> normalise with the ImageNet mean
and std -> batch -> labels (int, or one-hot with label smoothing) -> prefetch.

Images are decoded from their bytes, not trusted to be what TFDS says: JPEGs
(grey and CMYK too) decode only the crop window, anything else TensorFlow can
read (PNG, GIF, BMP, WebP under a .jpg name) is decoded whole; all come out
RGB. Test splits have no labels (TFDS gives -1).

Metrics: with int labels use `keras.metrics.SparseTopKCategoricalAccuracy(k=1)`
and `(k=5)`; with one-hot labels (`label_smoothing > 0`)
`keras.metrics.TopKCategoricalAccuracy(k=1)` and `(k=5)`.
"""

import functools

import tensorflow as tf
import tensorflow_datasets as tfds
from official.vision.ops import augment

from spinenet_tf.data import image_ops, tfds_names
from spinenet_tf.data.skipping import SkipCounter, guarded

# name: (classes as TFDS reports them, training split, evaluation split).
# Other splits: 'test' of each (unlabelled), 'mini' of i_naturalist2021
# (50 images per species, a subset of 'train').
DATASETS = {
    'i_naturalist2017': (5089, 'train', 'validation'),
    'i_naturalist2021': (10000, 'train', 'val'),
    'imagenet2012': (1000, 'train', 'validation'),
}
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
# RandAugment constants of Model Garden's classification config.
RANDAUGMENT_CUTOUT = 40
RANDAUGMENT_TRANSLATE = 10


def _base_name(name):
  return tfds_names.base_name(name, DATASETS, 'imagenet2012:5.1.0')


def default_splits(name):
  """(training split, evaluation split) of a dataset."""
  return DATASETS[_base_name(name)][1:]


def _builder(name, data_dir):
  """The TFDS builder of `name`, or one read from its prepared files when
  TFDS's code cannot build it (tensorflow-datasets 4.9.10 ships
  i_naturalist2021 without the label names file its code reads)."""
  _base_name(name)
  try:
    return tfds.builder(name, data_dir=data_dir)
  except FileNotFoundError:
    return tfds.core.read_only_builder.builder_from_files(name,
                                                          data_dir=data_dir)


def read_num_classes(name, data_dir=None):
  """Number of classes, read from the TFDS builder's label feature."""
  return _builder(name, data_dir).info.features['label'].num_classes


def _center_window(size, image_size):
  """[y, x, h, w]: the central square of image_size / (image_size + 32) of
  the short side of an image of `size` [2]."""
  height, width = size[0], size[1]
  fraction = image_size / (image_size + image_ops.CROP_PADDING)
  side = tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32),
                 tf.int32)
  side = tf.maximum(side, 1)
  return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side,
                   side])


def _random_window(size, image_size, seed):
  """[y, x, h, w] of a random crop (area and aspect ratio in the standard
  ranges) of an image of `size` [2]; the center window when no attempt
  fits."""
  begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.concat([size, [3]], 0), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed, min_object_covered=0.1,
      aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=AREA_RANGE,
      max_attempts=10)
  failed = tf.reduce_all(tf.equal(crop[:2], size))
  return tf.cond(failed, lambda: _center_window(size, image_size),
                 lambda: tf.concat([begin[:2], crop[:2]], 0))


def _decode_resized(encoded, seed, is_training, image_size):
  """float32 [S, S, 3] in 0..255: the crop window, decoded and resized."""
  if is_training:
    window_fn = lambda size, _: _random_window(size, image_size, seed)
  else:
    window_fn = lambda size, _: _center_window(size, image_size)
  pixels = image_ops.decode_window(encoded, window_fn)[0]
  image = tf.image.resize(pixels, [image_size, image_size])
  return tf.ensure_shape(image, [image_size, image_size, 3])


def build_classification_dataset(
    name, split, is_training, image_size, global_batch_size, *,
    data_dir=None, randaugment=None, label_smoothing=0.0, num_classes=None,
    shuffle_buffer=10_000, seed=None, deterministic=None, drop_remainder=None,
    input_context=None, skip_counter=None):
  """Batches of (images, labels) of a TFDS classification dataset.

  Never downloads: prepare the data first (e.g. `tfds build i_naturalist2021
  --data_dir=DIR`; ImageNet needs its archives in the manual directory).

  Args:
    name: 'i_naturalist2017', 'i_naturalist2021' or 'imagenet2012', with an
      optional version ('imagenet2012:5.1.0').
    split: a TFDS split (see `DATASETS`, `default_splits`), e.g. 'train',
      'validation[:10%]'.
    is_training: random resized crop, flip, RandAugment, shuffling; else the
      padded center crop.
    image_size: side S of the square output images.
    global_batch_size: images per step over all replicas; with
      `input_context` each pipeline batches its per-replica share.
    data_dir: TFDS data directory.
    randaugment: (num_layers, magnitude) to apply RandAugment in training
      (Model Garden's op; its own randomness is not controlled by `seed`).
    label_smoothing: s > 0 gives float32 one-hot labels [B, num_classes],
      y (1 - s) + s / num_classes in training and plain one-hot in
      evaluation; 0 gives int32 labels [B].
    num_classes: classes of the one-hot labels; default from the TFDS info.
    shuffle_buffer: records in the shuffle buffer (training).
    seed: makes shuffling, crops and flips repeatable (with the default
      `deterministic`).
    deterministic: keep element order under parallelism; default when a
      seed is given or not training.
    drop_remainder: drop a last partial batch (static batch size); default
      `is_training`.
    input_context: a `tf.distribute.InputContext`: read only this pipeline's
      TFDS files (the split needs at least `num_input_pipelines` files).
    skip_counter: a `SkipCounter` to read how many records were skipped
      (`skipped_records`; a new one, only logging, by default); it is also
      `dataset.skip_counter`.

  Returns:
    A tf.data.Dataset of (images float32 [B, S, S, 3], labels), with
    attributes `skip_counter` and `source_description` (e.g. "TFDS
    'imagenet2012' split 'train' in '/data'"); if no batch comes,
    `skip_counter.no_valid_records_error()` is the error to raise (see
    `skipping`). TFDS reads the files (TFRecords, its own reader).
  """
  builder = _builder(name, data_dir)
  if not isinstance(image_size, int) or image_size < 1:
    raise ValueError(f'image_size must be a positive int, got {image_size!r}.')
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f'label_smoothing must be in [0, 1), got '
                     f'{label_smoothing!r}.')
  if label_smoothing > 0 and num_classes is None:
    num_classes = builder.info.features['label'].num_classes
  batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                if input_context else global_batch_size)
  if deterministic is None:
    deterministic = seed is not None or not is_training
  drop_remainder = is_training if drop_remainder is None else drop_remainder
  skip_counter = skip_counter or SkipCounter()
  description = f'TFDS {name!r} split {split!r} in {data_dir!r}'
  skip_counter.describe(description, batch_size, drop_remainder)
  augmenter = None if randaugment is None else augment.RandAugment(
      *randaugment, cutout_const=RANDAUGMENT_CUTOUT,
      translate_const=RANDAUGMENT_TRANSLATE)

  records = builder.as_dataset(
      split=split, shuffle_files=is_training,
      decoders={'image': tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=True,
                                  input_context=input_context))
  if is_training:
    records = records.shuffle(shuffle_buffer, seed=seed)
  seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
  ds = tf.data.Dataset.zip(records, seeds.batch(2))

  def decode(record, seed):
    image, ok = guarded(
        functools.partial(_decode_resized, is_training=is_training,
                          image_size=image_size), record['image'], seed)
    return image, record['label'], ok, record['tfds_id'], seed

  def augment_and_normalize(image, label, seed):
    if is_training:
      flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
      image = tf.image.stateless_random_flip_left_right(image, flip_seed)
      if augmenter is not None:
        image = augmenter.distort(image)
    return image_ops.normalize_image(image), tf.cast(label, tf.int32)

  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.filter(lambda image, label, ok, record_id, seed:
                 skip_counter.keep(ok, record_id))
  ds = ds.map(lambda image, label, ok, record_id, seed:
              augment_and_normalize(image, label, seed),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  if label_smoothing > 0:
    smoothing = label_smoothing if is_training else 0.0
    ds = ds.map(lambda images, labels: (images, tf.one_hot(
        labels, num_classes, on_value=1 - smoothing + smoothing / num_classes,
        off_value=smoothing / num_classes)))
  options = tf.data.Options()
  options.deterministic = deterministic
  ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
  ds.skip_counter = skip_counter
  ds.source_description = description
  return ds
