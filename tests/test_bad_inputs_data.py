"""Bad input to the data layer: what the user gets (message and counts).

Each case writes a handful of tiny JPEGs in TFRecords under tmp_path."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.data import detection_input, detection_records, skipping
from spinenet_tf.detection import coco_eval

SIZE = 64
HEIGHT, WIDTH = 24, 32


def _jpeg(seed=0):
  image = np.random.default_rng(seed).integers(0, 255, (HEIGHT, WIDTH, 3))
  return tf.io.encode_jpeg(image.astype(np.uint8)).numpy()


def _record(source_id='1', encoded=None, boxes=((0.1, 0.1, 0.6, 0.7),),
            classes=None, seed=0):
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  classes = [1] * len(boxes) if classes is None else classes
  return detection_records.make_example(
      _jpeg(seed) if encoded is None else encoded, HEIGHT, WIDTH, boxes,
      classes, source_id=source_id).SerializeToString()


def _shard(tmp_path, records, name='data'):
  """Writes one shard; (its path, its pattern)."""
  path, = detection_records.write_tfrecords(str(tmp_path / name), records)
  return path, str(tmp_path / f'{name}-*.tfrecord')


def _offset(records, k):
  """Byte offset of record k in a shard of `records`."""
  return sum(16 + len(r) for r in records[:k])


def _damage(path, offset):
  data = bytearray(open(path, 'rb').read())
  data[offset] ^= 0xFF
  open(path, 'wb').write(bytes(data))


def _eval(pattern, **kwargs):
  """(source ids read, counter, warnings logged) of an eval pass."""
  counter = skipping.SkipCounter()
  ds = detection_input.build_detection_dataset(
      'tfrecord', False, SIZE, 2, file_pattern=pattern, skip_counter=counter,
      **kwargs)
  ids = [i for _, labels in ds for i in labels['source_id'].numpy()]
  return sorted(ids), counter


def _warnings(caplog, text):
  return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_corrupt_record_mid_shard_loses_only_that_record(tmp_path, caplog):
  records = [_record(str(i)) for i in range(5)]
  path, pattern = _shard(tmp_path, records)
  _damage(path, _offset(records, 2) + 40)  # inside record 2's payload
  with caplog.at_level(logging.WARNING):
    ids, counter = _eval(pattern)
  assert ids == [0, 1, 3, 4]
  assert counter.records_read == 4 and counter.lost_records == 1
  assert counter.lost_bytes == 16 + len(records[2])
  assert counter.corrupt_files[path].recovered_records == 2
  assert _warnings(caplog, 'Corrupt TFRecord file') == [
      f'Corrupt TFRecord file {path}: 1 damaged record '
      f'({16 + len(records[2])} bytes) skipped from byte '
      f'{_offset(records, 2)}, 2 records after the damage recovered '
      '(1 corrupt files so far).']
  assert f'1 corrupt file: {path} (1 record, ' in counter.summary()


def test_damaged_record_header_resynchronises(tmp_path):
  records = [_record(str(i)) for i in range(5)]
  path, pattern = _shard(tmp_path, records)
  _damage(path, _offset(records, 2) + 1)  # record 2's length field
  ids, counter = _eval(pattern)
  assert ids == [0, 1, 3, 4]
  assert counter.lost_records == 1
  assert counter.lost_bytes == 16 + len(records[2])


def test_truncated_shard_loses_its_partial_last_record(tmp_path, caplog):
  records = [_record(str(i)) for i in range(5)]
  path, pattern = _shard(tmp_path, records)
  data = open(path, 'rb').read()
  cut = _offset(records, 4) + 30
  open(path, 'wb').write(data[:cut])
  with caplog.at_level(logging.WARNING):
    ids, counter = _eval(pattern)
  assert ids == [0, 1, 2, 3]
  info = counter.corrupt_files[path]
  assert info.truncated and info.lost_records == 1 and info.lost_bytes == 30
  message, = _warnings(caplog, 'Corrupt TFRecord file')
  assert 'the file ends inside the damage (truncated)' in message


def test_non_tfrecord_file_in_the_pattern_is_named(tmp_path, caplog):
  _, _ = _shard(tmp_path, [_record('1'), _record('2')])
  text = tmp_path / 'data-notes.tfrecord'
  text.write_text('these are notes, not records\n' * 20)
  with caplog.at_level(logging.WARNING):
    ids, counter = _eval(str(tmp_path / 'data-*'))
  assert ids == [1, 2]
  assert counter.corrupt_files[str(text)].not_tfrecord
  assert _warnings(caplog, 'is not a TFRecord file') == [
      f'{text} is not a TFRecord file: no valid record in its 580 bytes; '
      'skipped (1 corrupt files so far).']


def test_empty_pattern_names_the_pattern(tmp_path):
  pattern = str(tmp_path / 'nothing-*.tfrecord')
  with pytest.raises(FileNotFoundError) as error:
    detection_input.build_detection_dataset('tfrecord', True, SIZE, 2,
                                            file_pattern=pattern)
  assert str(error.value) == f'No files match {pattern!r}.'


@pytest.mark.timeout(300)
def test_all_bad_training_records_end_with_one_clear_error(tmp_path):
  records = [_record(str(i), encoded=b'not a jpeg') for i in range(5)]
  _, pattern = _shard(tmp_path, records)
  ds = detection_input.build_detection_dataset(
      'tfrecord', True, SIZE, 2, file_pattern=pattern, seed=0)
  counter = ds.skip_counter
  assert ds.source_description == f'file_pattern {pattern!r} (1 file)'
  # Repeated, as the tasks repeat it: it ends instead of looping forever,
  # with the OutOfRangeError a training loop sees.
  with pytest.raises(tf.errors.OutOfRangeError):
    iter(ds.repeat()).get_next()
  error = counter.no_valid_records_error()
  assert isinstance(error, skipping.NoValidRecordsError)
  assert isinstance(error, ValueError)
  assert str(error) == (
      f'No valid records in file_pattern {pattern!r} (1 file): 5 records '
      'read, 5 skipped (undecodable image or tf.Example).')


def test_all_corrupt_files_name_the_files_in_the_error(tmp_path):
  path = tmp_path / 'data-00000.tfrecord'
  path.write_bytes(bytes(range(256)) * 4)
  counter = skipping.SkipCounter()
  ds = detection_input.build_detection_dataset(
      'tfrecord', True, SIZE, 2, file_pattern=str(tmp_path / 'data-*'),
      skip_counter=counter)
  assert list(ds.repeat().take(1)) == []
  assert str(counter.no_valid_records_error()) == (
      f"No valid records in file_pattern '{tmp_path}/data-*' (1 file): 0 "
      'records read, 0 skipped (undecodable image or tf.Example), 1 corrupt '
      f'file: {path} (not a TFRecord file, 1024 bytes).')


def test_fewer_valid_records_than_one_batch(tmp_path):
  _, pattern = _shard(tmp_path, [_record('1'), _record('2'),
                                 _record('3', encoded=b'')])
  ds = detection_input.build_detection_dataset(
      'tfrecord', True, SIZE, 4, file_pattern=pattern, seed=0)
  assert list(ds.repeat().take(1)) == []
  assert str(ds.skip_counter.no_valid_records_error()).startswith(
      f'Only 2 valid records, fewer than one batch of 4, in file_pattern '
      f"{pattern!r} (1 file): 3 records read, 1 skipped")


def test_corrupt_jpeg_in_a_good_shard_is_skipped_and_counted(tmp_path,
                                                             caplog):
  bad = _jpeg()[:40] + bytes(100)
  path, pattern = _shard(tmp_path, [_record('1'), _record('2', encoded=bad),
                                    _record('3')])
  with caplog.at_level(logging.WARNING):
    ids, counter = _eval(pattern)
  assert ids == [1, 3] and counter.skipped_records == 1
  assert _warnings(caplog, 'Skipped record') == [
      f'Skipped record {path}#1: its image or tf.Example could not be '
      'decoded (1 records skipped so far).']


def test_boxes_out_of_range_are_dropped_and_counted(tmp_path, caplog):
  path, pattern = _shard(tmp_path, [_record('1', boxes=[
      (0.1, 0.1, 0.5, 0.5), (1.2, 1.2, 1.5, 1.5), (0.5, 0.5, 0.2, 0.9),
      (0.1, 0.1, 0.5, 0.5)], classes=[1, 1, 1, 200])])
  with caplog.at_level(logging.WARNING):
    ids, counter = _eval(pattern)
  assert ids == [1] and counter.invalid_boxes == 3
  assert _warnings(caplog, 'invalid boxes') == [
      f'Dropped 3 invalid boxes of record {path}#0 (not finite, empty, '
      'outside the image or class out of range; 3 so far).']


def test_boxes_beyond_max_num_instances_are_counted(tmp_path, caplog):
  boxes = [(0.05 * i, 0.1, 0.05 * i + 0.04, 0.5) for i in range(7)]
  path, pattern = _shard(tmp_path, [_record('1', boxes=boxes)])
  with caplog.at_level(logging.WARNING):
    ids, counter = _eval(pattern, max_num_instances=4)
  assert ids == [1] and counter.truncated_boxes == 3
  assert _warnings(caplog, 'max_num_instances') == [
      f'Cut 3 boxes of record {path}#0 beyond max_num_instances (3 so far).']
  assert '3 boxes cut at max_num_instances' in counter.summary()


def test_missing_image_key_is_skipped_and_counted(tmp_path, caplog):
  example = tf.train.Example.FromString(_record('2'))
  del example.features.feature['image/encoded']
  path, pattern = _shard(tmp_path, [_record('1'),
                                    example.SerializeToString()])
  with caplog.at_level(logging.WARNING):
    ids, counter = _eval(pattern)
  assert ids == [1] and counter.skipped_records == 1
  assert _warnings(caplog, 'Skipped record') == [
      f'Skipped record {path}#1: its image or tf.Example could not be '
      'decoded (1 records skipped so far).']


def test_duplicate_source_ids_in_eval_are_reported(tmp_path, caplog):
  _, pattern = _shard(tmp_path, [_record('7', seed=i) for i in range(3)])
  counter = skipping.SkipCounter()
  ds = detection_input.build_detection_dataset(
      'tfrecord', False, SIZE, 3, file_pattern=pattern, skip_counter=counter)
  _, labels = next(iter(ds))
  labels = {k: v.numpy() for k, v in labels.items()}
  truth = {'source_id': labels['source_id'],
           'height': labels['image_info'][:, 0, 0],
           'width': labels['image_info'][:, 0, 1],
           'boxes': labels['boxes'] / labels['image_info'][:, 2:3, :].repeat(
               2, -1), 'classes': labels['classes']}
  evaluator = coco_eval.CocoEvaluator()
  with caplog.at_level(logging.WARNING):
    evaluator.update(truth, {**truth, 'scores': np.ones_like(
        labels['classes'], np.float32)})
  assert evaluator.num_duplicates == 2
  message, = _warnings(caplog, 'Duplicate image ids')
  assert message.startswith('Duplicate image ids [7, 7] (2 duplicates so '
                            'far): evaluated as new images')
  assert evaluator.result()['AP'] == pytest.approx(1.0, abs=1e-6)


def test_records_without_source_id_get_distinct_63_bit_ids(tmp_path):
  records = [_record('', seed=i) for i in range(5)]
  _, pattern = _shard(tmp_path, records)
  ids, counter = _eval(pattern)
  assert len(set(ids)) == 5 and counter.skipped_records == 0
  assert all(0 <= i < 2**63 - 1 for i in ids)
  assert max(ids) >= 2**40  # not Model Garden's 22 bits
  decoded = sorted(int(detection_records.decode_example(r)['source_id'])
                   for r in records)
  assert ids == decoded  # 19-digit ids are parsed, not hashed again


def test_summary_is_one_line_of_all_counts(tmp_path):
  records = [_record(str(i)) for i in range(3)]
  path, pattern = _shard(tmp_path, records)
  _damage(path, _offset(records, 1) + 40)
  _, counter = _eval(pattern)
  assert counter.summary() == (
      f'Input file_pattern {pattern!r} (1 file): 2 records read, 0 skipped '
      '(undecodable image or tf.Example), 0 invalid boxes dropped, 0 boxes '
      f'cut at max_num_instances, 1 corrupt file: {path} (1 record, '
      f'{16 + len(records[1])} bytes lost).')


def test_a_trainer_written_dataset_is_refused_for_other_sizes(tmp_path):
  # Before: info.json existing was enough, so a data_dir written for 4
  # images at 128 px was read by a config asking 8 images at 256 px.
  from spinenet_tf import configs
  from spinenet_tf.training import config as config_lib
  from spinenet_tf.training.tasks import build_task

  def task(images, size):
    return build_task(config_lib.load_experiment(
        configs.path('demo_retinanet_synthetic'),
        [f'train_data.synthetic_num_images={images},'
         'eval_data.synthetic_num_images=2,'
         f'model.input_size={size}']), str(tmp_path))

  task(4, 128).train_dataset()  # written on first use
  task(4, 128).train_dataset()  # the same keys: read as it is
  with pytest.raises(ValueError) as error:
    task(8, 256).train_dataset()
  assert str(error.value) == (
      f"data_dir {str(tmp_path)!r} holds the synthetic dataset written for "
      'other config values (train_data.synthetic_num_images 4 there, 8 '
      'here; model.input_size 128 there, 256 here); use another '
      '--data_dir, or remove it to write it again.')
