"""Reading TFRecord files without silent loss.

TensorFlow's `TFRecordDataset` stops a file at its first damaged record (a
bad length or data CRC, or a record cut short by the end of the file); with
`ignore_errors` the rest of the file is dropped, uncounted. `read_file`
keeps TensorFlow's fast C++ reader (every record's two CRCs checked) and
adds a resynchronising fallback that runs only for damaged files:

1. The file is read by `TFRecordDataset(path).ignore_errors()`. A `scan`
   over batches of its records adds up the bytes it consumed (8-byte
   length, 4-byte length CRC, the payload, 4-byte data CRC per record) and
   the records it gave; an empty batch after the last marks the end.
2. After the file's last record, one `tf.py_function` per file (a stat)
   compares the consumed bytes with the file size. Equal: the file was
   whole. Otherwise TensorFlow stopped at a damaged record at that offset,
   and `_recover` reads the rest of the file (into memory, once):
   - the header (length and its masked CRC32C) is intact: the payload or
     its CRC is damaged: exactly that record is skipped, by its length;
   - the header is damaged: the next offset whose 12 header bytes carry a
     valid masked CRC32C is found (numpy, vectorised); the bytes in
     between are lost and counted as one record (at least one);
   - the header says the record runs past the end of the file, or fewer
     than 12 bytes are left (a truncated shard): that record is lost;
   - from the next intact header on, TensorFlow's own reader (on a
     temporary local copy of the rest of the file) reads and CRC-checks
     the records, up to the next damage, and so on.
   Every recovered record passed both CRCs. They follow the intact prefix,
   in file order.
3. The counter (`SkipCounter.file_damaged`) names the file and counts the
   records and bytes lost; a file with no valid record at all is reported
   as not a TFRecord file. Each damaged file is logged once (one line) and
   counted once in `SkipCounter.corrupt_files`; `records_read` counts the
   records each pass reads.

Cost on intact files: a batch, a scan step and an unbatch per 64 records
(and a few microseconds per record), one stat per file per pass. Uncompressed TFRecords only (as the rest of the package).
"""

import functools
import os
import tempfile

import numpy as np
import tensorflow as tf

_HEADER = 12  # uint64 length + uint32 masked CRC32C of the length
_FRAMING = 16  # header + uint32 masked CRC32C of the payload
_CHUNK = 1 << 22  # offsets scanned at a time for the next header
_BATCH = 64  # records whose bytes are added up at a time


def _crc32c_table():
  table = np.zeros(256, np.uint32)
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table[i] = c
  return table


_TABLE = _crc32c_table()


def _header_valid(data, offsets):
  """Whether the 12 bytes at each of `offsets` (int64 array, each at most
  len(data) - 12) are a TFRecord header: the masked CRC32C of the 8 length
  bytes equals the stored one."""
  crc = np.full(len(offsets), 0xFFFFFFFF, np.uint32)
  for i in range(8):
    crc = _TABLE[(crc ^ data[offsets + i]) & 0xFF] ^ (crc >> np.uint32(8))
  crc ^= np.uint32(0xFFFFFFFF)
  masked = ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(
      0xA282EAD8)
  stored = np.zeros(len(offsets), np.uint32)
  for i in range(4):
    stored |= data[offsets + 8 + i].astype(np.uint32) << np.uint32(8 * i)
  return masked == stored


def _length(data, offset):
  return int.from_bytes(data[offset:offset + 8].tobytes(), 'little')


def _next_header(data, start):
  """The first offset >= start with a valid header, else len(data)."""
  end = len(data) - _HEADER + 1
  for begin in range(start, max(end, start), _CHUNK):
    stop = min(begin + _CHUNK, end)
    # Lengths below 2**40: the top three length bytes are zero.
    plausible = ((data[begin + 5:stop + 5] == 0) &
                 (data[begin + 6:stop + 6] == 0) &
                 (data[begin + 7:stop + 7] == 0))
    candidates = begin + np.flatnonzero(plausible).astype(np.int64)
    if len(candidates):
      valid = np.flatnonzero(_header_valid(data, candidates))
      if len(valid):
        return int(candidates[valid[0]])
  return len(data)


def _read_intact(data):
  """(records, bytes consumed): the records TensorFlow reads from the start
  of `data` (bytes) up to the first damage or the end."""
  if not data:
    return [], 0
  fd, path = tempfile.mkstemp(suffix='.tfrecord')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    records, consumed = [], 0
    try:
      for record in tf.data.TFRecordDataset(path):
        record = record.numpy()
        records.append(record)
        consumed += _FRAMING + len(record)
    except tf.errors.DataLossError:
      pass
    return records, consumed
  finally:
    os.remove(path)


def recover(path, start):
  """Reads `path` from `start`, where TensorFlow's reader stopped.

  Returns (recovered records, lost records, lost bytes, file size, whether
  the last loss runs to the end of the file: truncated); see the module
  doc. With start == size nothing is lost.
  """
  size = tf.io.gfile.stat(path).length
  if start >= size:
    return [], 0, 0, size, False
  with tf.io.gfile.GFile(path, 'rb') as f:
    f.seek(start)
    raw = f.read()
  data = np.frombuffer(raw, np.uint8)
  n = len(data)
  records, lost_records, lost_bytes, pos = [], 0, 0, 0
  while pos < n:  # damaged at pos
    lost_records += 1
    if n - pos >= _HEADER and _header_valid(data, np.array([pos]))[0]:
      nxt = min(pos + _FRAMING + _length(data, pos), n)
    else:
      nxt = _next_header(data, pos + 1)
    lost_bytes += nxt - pos
    if nxt == n:
      return records, lost_records, lost_bytes, size, True
    intact, consumed = _read_intact(raw[nxt:])
    records += intact
    pos = nxt + consumed
  return records, lost_records, lost_bytes, size, False


def _end_of_file(path, offset, num_read, counter):
  path = path.numpy().decode()
  offset, num_read = int(offset), int(num_read)
  records, lost_records, lost_bytes, size, truncated = recover(path, offset)
  counter.file_read(path, num_read + len(records))
  if lost_records:
    counter.file_damaged(path, offset, lost_records, lost_bytes,
                         len(records), size, truncated=truncated,
                         not_tfrecord=offset == 0 and not records)
  return tf.constant(records, tf.string, shape=[len(records)])


def read_file(path, counter):
  """A dataset of the serialized records of the TFRecord file `path` (a
  string tensor), damaged records skipped and counted by `counter` (a
  `SkipCounter`); see the module doc."""
  # Bytes are added up per batch of records; an empty batch (never a real
  # one) marks the end of the file.
  batches = tf.data.TFRecordDataset(path).ignore_errors().batch(
      _BATCH).concatenate(tf.data.Dataset.from_tensors(
          tf.zeros([0], tf.string)))

  def step(state, records):
    offset, count = state
    size = tf.reduce_sum(_FRAMING + tf.cast(tf.strings.length(records),
                                            tf.int64))
    return ((offset + size, count + tf.size(records, tf.int64)),
            (records, offset, count))

  zero = tf.constant(0, tf.int64)

  def at_end(records, offset, count):
    return tf.cond(
        tf.size(records) > 0, lambda: records,
        lambda: tf.ensure_shape(tf.py_function(
            functools.partial(_end_of_file, counter=counter),
            [path, offset, count], tf.string), [None]))

  return batches.scan((zero, zero), step).map(at_end).unbatch()
