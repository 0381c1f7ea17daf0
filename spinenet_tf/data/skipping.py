"""Skipping bad records in tf.data pipelines without stopping them, and
saying what was lost.

`guarded` runs a per-record function and returns a validity flag instead of
raising; `SkipCounter.keep` filters on that flag, counting and logging the
records it drops. The TFRecord reader (`tfrecord_reader`) reports damaged
files to the same counter.

All-bad training data. A training dataset whose every record is bad gives
no batch: the repeated dataset ends at once (tf.data's `repeat` stops when a
pass is empty) and the training loop sees `tf.errors.OutOfRangeError`. Turn
that into one line naming the data and the counts:

    from spinenet_tf.data.skipping import NoValidRecordsError, SkipCounter

    counter = SkipCounter()
    ds = build_detection_dataset(..., is_training=True, skip_counter=counter)
    # ds.skip_counter is counter; ds.source_description names the data
    try:
      ...next(iterator)...
    except tf.errors.OutOfRangeError as e:
      raise counter.no_valid_records_error() from e

`counter.no_valid_records_error(source=None)` returns (does not raise) a
`NoValidRecordsError` (a ValueError) whose message names the source (the
one the dataset builder recorded in `counter.source`, or `source`) and the
counts: records read, skipped, corrupt files and what they lost. A
training task hands its builders one counter (`Task.train_skips`), which
the trainer reads.
"""

import collections
import functools
import math
import threading
import time

from absl import logging
import tensorflow as tf

# Box warnings of one counter: the first, then at most one a minute.
WARNING_SECONDS = 60
CorruptFile = collections.namedtuple(
    'CorruptFile', ['offset', 'lost_records', 'lost_bytes',
                    'recovered_records', 'size', 'truncated',
                    'not_tfrecord'])
CorruptFile.__doc__ = """A damaged TFRecord file, as one pass reads it:
damage from byte `offset` on; `lost_records` (a damaged header hides how
many records it held: counted as one) and `lost_bytes` lost;
`recovered_records` read after the damage; `size` of the file;
`truncated`: the last loss runs to the end of the file (a truncated or
damaged tail); `not_tfrecord`: no valid record at all."""


class NoValidRecordsError(ValueError):
  """A dataset gave no valid record (or not one batch). Build it with
  `SkipCounter.no_valid_records_error`."""


def _plural(n, word):
  return f'{n} {word}' + ('' if n == 1 else 's')


class SkipCounter:
  """What a pipeline dropped, counted as it is read (every pipeline that
  shares this counter adds to it):

  - `skipped_records`: records whose image or tf.Example could not be
    decoded (each logged);
  - `invalid_boxes`: boxes dropped as invalid; `truncated_boxes`: boxes
    beyond `max_num_instances`, cut off (each kind logged at most once a
    minute);
  - `corrupt_files`: {path: `CorruptFile`} for damaged TFRecord files (each
    logged once), with `lost_records` and `lost_bytes` their sums;
  - `records_read`: records read from TFRecord files, counted when each
    file ends (before any sharding by record).

  `source` (set by the dataset builders) describes the data, with
  `batch_size` and `drop_remainder`; `summary()` is one line of all counts;
  `no_valid_records_error()` the error for data that gave nothing.

  Counting and logging happen in `tf.py_function`s, called only for bad
  records and once per file: the pipeline runs in the Python process that
  built it (as with Keras `fit` and `distribute_datasets_from_function`;
  not tf.data service).
  """

  def __init__(self):
    self.skipped_records = 0
    self.invalid_boxes = 0
    self.truncated_boxes = 0
    self.records_read = 0
    self.corrupt_files = {}
    self.source = None
    self._warned = {}  # warning kind -> time.monotonic() of the last
    self.batch_size = None
    self.drop_remainder = None
    self.counts_reads = False
    self._lock = threading.Lock()

  @property
  def lost_records(self):
    return sum(f.lost_records for f in self.corrupt_files.values())

  @property
  def lost_bytes(self):
    return sum(f.lost_bytes for f in self.corrupt_files.values())

  def describe(self, source, batch_size=None, drop_remainder=None,
               counts_reads=False):
    """Records what the counter counts for (the dataset builders call it;
    `counts_reads`: the source reports `records_read`)."""
    self.source = source
    self.counts_reads = counts_reads
    self.batch_size = batch_size
    self.drop_remainder = drop_remainder

  def file_read(self, path, num_records):
    """A TFRecord file ended after `num_records` records."""
    del path
    with self._lock:
      self.records_read += num_records

  def file_damaged(self, path, offset, lost_records, lost_bytes,
                   recovered_records, size, truncated=False,
                   not_tfrecord=False):
    """A TFRecord file is damaged from `offset`: counted and logged the
    first time (a pass over the same file loses the same)."""
    info = CorruptFile(offset, lost_records, lost_bytes, recovered_records,
                       size, truncated, not_tfrecord)
    with self._lock:
      new = path not in self.corrupt_files
      self.corrupt_files[path] = info
      num_files = len(self.corrupt_files)
    if new:
      logging.warning('%s (%d corrupt files so far).',
                      self._describe_file(path, info), num_files)

  @staticmethod
  def _describe_file(path, info):
    if info.not_tfrecord:
      return (f'{path} is not a TFRecord file: no valid record in its '
              f'{info.size} bytes; skipped')
    return (f'Corrupt TFRecord file {path}: '
            f'{_plural(info.lost_records, "damaged record")} '
            f'({info.lost_bytes} bytes) skipped from byte {info.offset}' +
            (', the file ends inside the damage (truncated)'
             if info.truncated else '') +
            f', {_plural(info.recovered_records, "record")} after the damage '
            'recovered')

  def _report(self, ok, num_invalid, num_truncated, where, what):
    ok, num_invalid = bool(ok), int(num_invalid)
    num_truncated = int(num_truncated)
    where = where.numpy().decode(errors='replace')
    with self._lock:
      self.skipped_records += not ok
      self.invalid_boxes += num_invalid
      self.truncated_boxes += num_truncated
      skipped, invalid = self.skipped_records, self.invalid_boxes
      truncated = self.truncated_boxes
    if not ok:
      logging.warning('Skipped record %s: its %s could not be decoded (%d '
                      'records skipped so far).', where, what, skipped)
    if num_invalid and self._due('invalid_boxes'):
      logging.warning('Dropped %d invalid boxes of record %s (not finite, '
                      'empty, outside the image or class out of range; %d '
                      'so far).', num_invalid, where, invalid)
    if num_truncated and self._due('truncated_boxes'):
      logging.warning('Cut %d boxes of record %s beyond max_num_instances '
                      '(%d so far).', num_truncated, where, truncated)
    return ok

  def _due(self, kind):
    """True for this counter's first `kind` warning, then at most once
    every WARNING_SECONDS (per counter, so each dataset warns first)."""
    now = time.monotonic()
    with self._lock:
      if now - self._warned.get(kind, -math.inf) < WARNING_SECONDS:
        return False
      self._warned[kind] = now
      return True

  def keep(self, ok, where, num_invalid=0, what='image', num_truncated=0):
    """Graph-side filter predicate: `ok`. Counts and logs (only for bad
    records) a record `where` that is not `ok` ("its `what` could not be
    decoded"), has `num_invalid` boxes dropped or `num_truncated` boxes
    cut off at max_num_instances."""
    return tf.cond(
        ok & (num_invalid == 0) & (num_truncated == 0), lambda: ok,
        lambda: tf.ensure_shape(tf.py_function(
            functools.partial(self._report, what=what),
            [ok, num_invalid, num_truncated, where], tf.bool), []))

  def _file_summary(self):
    files = self.corrupt_files
    if not files:
      return ''
    parts = []
    for path, info in sorted(files.items()):
      if info.not_tfrecord:
        parts.append(f'{path} (not a TFRecord file, {info.size} bytes)')
      else:
        parts.append(f'{path} ({_plural(info.lost_records, "record")}, '
                     f'{info.lost_bytes} bytes lost)')
    return f'{_plural(len(files), "corrupt file")}: ' + ', '.join(parts)

  def _counts(self):
    parts = [f'{self.records_read} records read'] if self.counts_reads else []
    parts.append(f'{self.skipped_records} skipped (undecodable image or '
                 'tf.Example)')
    return parts

  def summary(self):
    """One line: every count (what was skipped, dropped, cut and lost)."""
    parts = self._counts() + [
        f'{self.invalid_boxes} invalid boxes dropped',
        f'{self.truncated_boxes} boxes cut at max_num_instances',
        self._file_summary() or '0 corrupt files']
    return ('Input' + (f' {self.source}' if self.source else '') + ': ' +
            ', '.join(parts) + '.')

  def no_valid_records_error(self, source=None):
    """A `NoValidRecordsError` (returned, not raised) for data that gave
    no batch: names `source` (default: `self.source`) and the counts."""
    source = source or self.source or 'the input'
    parts = self._counts()
    files = self._file_summary()
    if files:
      parts.append(files)
    valid = self.records_read - self.skipped_records
    if not self.counts_reads:
      what = 'No batch'
    elif valid > 0 and self.batch_size:
      what = (f'Only {valid} valid records, fewer than one batch of '
              f'{self.batch_size},')
    else:
      what = 'No valid records'
    return NoValidRecordsError(f'{what} in {source}: ' + ', '.join(parts) +
                               '.')


def guarded(fn, *args):
  """(fn(*args), True), or (zeros like it, False) if fn raised.

  For use inside tf.data functions: `fn` runs in a one-element dataset with
  `ignore_errors` (about 0.4 ms a call on CPU).
  """
  attempt = tf.data.Dataset.from_tensors(args).map(
      lambda *a: (fn(*a), True)).ignore_errors()
  failed = tf.nest.map_structure(
      lambda s: tf.zeros([d or 0 for d in s.shape], s.dtype),
      attempt.element_spec[0])
  return attempt.concatenate(tf.data.Dataset.from_tensors(
      (failed, False))).take(1).get_single_element()
