"""From a detection source to batches, in one function.

    ds = build_detection_dataset('tfrecord', is_training=True,
                                 output_size=640, batch_size=64,
                                 file_pattern='/data/coco/train-*')
    images, labels = next(iter(ds))  # [B, 640, 640, 3]; boxes, classes

Path of a record: source (TFRecord files, TFDS `coco/2017`, or the synthetic
shapes or scenes TFRecords) -> shuffle (training) -> per-record parse,
guarded: decode the tf.Example or TFDS features into an example dict
(`detection_records`), then `detection_parser.parse_train` / `parse_eval`
-> drop records that failed, counting them -> batch -> prefetch.

Bad input never stops the pipeline, and nothing is lost silently. Grey and
RGBA images are converted; invalid boxes are dropped and boxes beyond
`max_num_instances` cut off (`detection_parser`), both counted; a record
whose image or tf.Example cannot be decoded is skipped: the parse runs
inside a one-element dataset with `ignore_errors`, which yields a validity
flag per record. TFRecord files are read by `tfrecord_reader.read_file`: a
damaged record (bad CRC) is skipped and the records after it are still read;
a truncated file loses its last, partial record; a file that is not a
TFRecord file is named. `SkipCounter` counts all of it, logs it with absl
and has a one-line `summary()`.

The returned dataset carries `skip_counter` (the counter) and
`source_description` (e.g. "file_pattern '/data/train-*' (256 files)"),
which the counter also holds (`skip_counter.source`). A dataset with no
valid record (or, in training, not one batch) ends at once, also when
repeated; `skip_counter.no_valid_records_error()` then gives the error to
raise (see `skipping`).
"""

import tensorflow as tf

from spinenet_tf.data import (coco_tfds, detection_parser, detection_records,
                              synthetic_scenes, synthetic_shapes,
                              tfrecord_reader)
from spinenet_tf.data.skipping import SkipCounter, guarded

# The built-in datasets, written to data_dir (info.json 'dataset' names the
# source; a synthetic_shapes info.json has none).
SYNTHETIC = {'synthetic': synthetic_shapes,
             'synthetic_scenes': synthetic_scenes}
SOURCES = ('tfrecord', 'tfds', *SYNTHETIC)


def _tfrecord_records(file_pattern, is_training, seed, input_context,
                      deterministic, counter):
  """(serialized, 'file#index') from TFRecord files.

  With an `input_context`, each input pipeline reads its share of the files,
  or, with fewer files than pipelines (a pipeline would get none, end at
  once and leave the other workers waiting in their all-reduce), every file
  in the same order keeping its share of the records."""
  shard_records = bool(input_context) and (
      len(tf.io.gfile.glob(file_pattern)) < input_context.num_input_pipelines)
  files = tf.data.Dataset.list_files(
      file_pattern, shuffle=is_training and not shard_records, seed=seed)
  if input_context and not shard_records:
    files = files.shard(input_context.num_input_pipelines,
                        input_context.input_pipeline_id)

  def read(path):
    records = tfrecord_reader.read_file(path, counter)
    return records.enumerate().map(lambda i, record: (record, tf.strings.join(
        [path, tf.strings.as_string(i)], '#')))

  records = files.interleave(read, cycle_length=tf.data.AUTOTUNE,
                             num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=deterministic or shard_records)
  if shard_records:
    records = records.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)
  return records


def _records(source, file_pattern, data_dir, split, is_training, seed,
             input_context, deterministic, counter):
  """A dataset of (record, where) of a source, its record -> example dict
  function and a description of the source; `where` names the record in
  skip logs."""
  if source == 'tfds':
    features = coco_tfds.load_records(
        split=split, data_dir=data_dir, shuffle_files=is_training, seed=seed,
        input_context=input_context)
    return (features.map(lambda f: (f, f['tfds_id'])),
            coco_tfds.to_example,
            f'TFDS coco/2017 split {split!r} in {data_dir!r}')
  description = f'file_pattern {file_pattern!r}'
  if source in SYNTHETIC:
    dataset = SYNTHETIC[source].read_info(data_dir).get('dataset', 'synthetic')
    if dataset != source:
      raise ValueError(f'data_dir {data_dir!r} holds the {dataset!r} dataset, '
                       f'not {source!r}.')
    file_pattern = SYNTHETIC[source].file_pattern(data_dir, split)
    description = f'{source} split {split!r} ({file_pattern!r})'
  num_files = len(tf.io.gfile.glob(file_pattern))
  if not num_files:
    raise FileNotFoundError(f'No files match {file_pattern!r}.')
  return (_tfrecord_records(file_pattern, is_training, seed, input_context,
                            deterministic, counter),
          detection_records.decode_example,
          f'{description} ({num_files} file{"s" * (num_files != 1)})')


def build_detection_dataset(source, is_training, output_size, batch_size, *,
                            file_pattern=None, data_dir=None, split=None,
                            num_classes=None, max_num_instances=100,
                            scale_range=(0.5, 2.0), hflip=True,
                            shuffle_buffer=1000, seed=None,
                            deterministic=None, drop_remainder=None,
                            input_context=None, skip_counter=None,
                            label_map=None, mask_size=None):
  """Batches of detection training or evaluation data.

  Args:
    source: 'tfrecord' (`file_pattern`: Model Garden format tf.Examples),
      'tfds' (`coco/2017` in `data_dir`, COCO ids 1..90), 'synthetic'
      (`synthetic_shapes` records in `data_dir`) or 'synthetic_scenes'
      (`synthetic_scenes` records in `data_dir`).
    is_training: augment, shuffle, drop crowd boxes; else evaluation.
    output_size: side S of the square images (divisible by 2**max_level
      for the model).
    batch_size: images per batch (per input pipeline).
    split: TFDS / synthetic split; 'train' or 'validation' by default.
    num_classes: class slots with background 0; boxes with class ids
      outside 1..num_classes-1 are dropped. Default 91 (COCO), 4 for
      'synthetic', 13 for 'synthetic_scenes'.
    max_num_instances: M, ground truth per image after padding.
    scale_range: (min, max) random scale of the long side relative to S.
    hflip: random horizontal flips in training.
    shuffle_buffer: records in the shuffle buffer (training).
    seed: makes shuffling and augmentation repeatable (with the default
      `deterministic`).
    deterministic: keep element order under parallelism; default: when a
      seed is given or not training.
    drop_remainder: default `is_training`.
    input_context: a `tf.distribute.InputContext` to shard the input.
    skip_counter: a `SkipCounter` to count skipped records, dropped and
      cut boxes, damaged files (a new one, only logging, by default); it
      is also `dataset.skip_counter`.
    label_map: a `label_map.LabelMap`: a record holding a class id it does
      not have stops the pipeline with an InvalidArgumentError naming the
      id, the record (file#index) and the label map.
    mask_size: training labels also get 'masks' [B, M, K, K], each
      instance's mask over its box (records with `image/object/mask`; a
      record without them, or with another count, is skipped and counted).

  Returns:
    A tf.data.Dataset of (images float32 [B, S, S, 3], labels) where labels
    are {'boxes': [B, M, 4] pixels, 'classes': [B, M] int32, -1 padding},
    plus for evaluation 'is_crowd', 'areas', 'image_info' [B, 4, 2] and
    'source_id' [B] int64 (see `detection_parser`). Its attributes
    `skip_counter` and `source_description` say what was lost and where
    the data came from (see the module doc).
  """
  if source not in SOURCES:
    raise ValueError(f'source must be one of {SOURCES}, got {source!r}.')
  if (source == 'tfrecord') != (file_pattern is not None):
    raise ValueError("file_pattern is needed for, and only for, "
                     "source='tfrecord'.")
  if source in SYNTHETIC and data_dir is None:
    raise ValueError(f'source={source!r} needs data_dir.')
  if mask_size is not None and source == 'tfds':
    raise ValueError('TFDS coco/2017 carries no instance masks: convert '
                     'the COCO annotation JSON with spinenet-coco-to-tfrecord '
                     "--include_masks and read it with source='tfrecord'.")
  split = split or ('train' if is_training else 'validation')
  if num_classes is None:
    num_classes = (SYNTHETIC[source].NUM_CLASSES if source in SYNTHETIC
                   else 91)
  if deterministic is None:
    deterministic = seed is not None or not is_training
  drop_remainder = is_training if drop_remainder is None else drop_remainder
  skip_counter = skip_counter or SkipCounter()

  records, to_example, description = _records(
      source, file_pattern, data_dir, split, is_training, seed,
      input_context, deterministic, skip_counter)
  skip_counter.describe(description, batch_size, drop_remainder,
                        counts_reads=source != 'tfds')

  known_ids = tf.constant(sorted(label_map.names) if label_map else [],
                          tf.int32)

  def parse(record, *augmentation_seed):
    example = to_example(record)
    if is_training:
      image, labels, dropped = detection_parser.parse_train(
          example, augmentation_seed[0], output_size, scale_range, hflip,
          num_classes, max_num_instances, mask_size)
    else:
      image, labels, dropped = detection_parser.parse_eval(
          example, output_size, num_classes, max_num_instances)
    if label_map is not None:
      classes = example['classes']
      known = tf.reduce_any(classes[:, None] == known_ids[None, :], axis=1)
      dropped = {**dropped, 'unknown_class': tf.reduce_max(tf.concat(
          [[0], tf.where(known | (classes <= 0), 0, classes)], 0))}
    return image, labels, dropped

  def refuse_unknown_class(dropped, where):
    """An error naming the record and the class id it should not hold."""
    unknown = dropped['unknown_class']
    message = tf.strings.join([
        'record ', where, ' holds class id ', tf.strings.as_string(unknown),
        f', which label map {label_map.path or "(given)"} does not have '
        f'(its ids: {sorted(label_map.names)}); convert the records with '
        'this label map or fix it.'])
    return tf.debugging.Assert(tf.equal(unknown, 0), [message],
                               summarize=1)

  def guarded_parse(record, where, *augmentation_seed):
    (image, labels, dropped), ok = guarded(parse, record, *augmentation_seed)
    if label_map is not None:
      with tf.control_dependencies([refuse_unknown_class(dropped, where)]):
        ok = tf.identity(ok)
    return image, labels, ok, dropped, where

  if is_training:
    records = records.shuffle(shuffle_buffer, seed=seed)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    records = tf.data.Dataset.zip(records, seeds.batch(2)).map(
        lambda record_where, pair: (*record_where, pair))
  ds = records.map(guarded_parse, num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=deterministic)
  ds = ds.filter(lambda image, labels, ok, dropped, where:
                 skip_counter.keep(ok, where, dropped['invalid_boxes'],
                                   what='image or tf.Example',
                                   num_truncated=dropped['truncated_boxes']))
  ds = ds.map(lambda image, labels, *_: (image, labels))
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  options = tf.data.Options()
  options.deterministic = deterministic
  ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
  ds.skip_counter = skip_counter
  ds.source_description = description
  return ds
