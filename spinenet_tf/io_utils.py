"""File helpers that work on local and gs:// paths (tf.io.gfile).

    atomic_write('/runs/a/eval_metrics.json', json.dumps(metrics))

`read_text(path, what)` reads a file users write (configs, spec files,
label maps, annotations) from UTF-8, with or without a byte-order mark,
or from UTF-16 with one; errors name `what` (the flag or kind of file).

A reader never sees a half-written file: the text goes to
`path + '.tmp-<uuid>'`, which is then renamed over `path`. Locally the
rename is atomic; on object stores (gs://) it is a copy and a delete, so a
reader sees the old or the new object, never a partial one.
"""

import codecs
import uuid

import tensorflow as tf

TMP_MARK = '.tmp-'


def atomic_write(path, text):
  """Writes `text` (str or bytes) to `path` atomically; returns `path`."""
  path = str(path)
  tmp = f'{path}{TMP_MARK}{uuid.uuid4().hex}'
  mode = 'wb' if isinstance(text, bytes) else 'w'
  try:
    with tf.io.gfile.GFile(tmp, mode) as f:
      f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
    raise
  return path


# Byte-order marks -> the codec that reads past them.
_MARKED_CODECS = ((codecs.BOM_UTF8, 'utf-8-sig'),
                  (codecs.BOM_UTF16_LE, 'utf-16'),
                  (codecs.BOM_UTF16_BE, 'utf-16'))


def read_text(path, what):
  """The text of the file `path` (local or gs://). A missing file, a
  folder or text that is not UTF-8 (or UTF-16 with a byte-order mark) is
  an error naming `what` (e.g. '--label_map') and the path."""
  path = str(path)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{what} {path}: no such file.')
  if tf.io.gfile.isdir(path):
    raise IsADirectoryError(f'{what} {path}: is a folder; expected a file.')
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = f.read()
  codec = next((c for bom, c in _MARKED_CODECS if data.startswith(bom)),
               'utf-8')
  try:
    return data.decode(codec)
  except UnicodeDecodeError as e:
    raise ValueError(f'{what} {path}: not {codec.upper()} text (byte '
                     f'{e.start}: {e.reason}); save it as UTF-8.') from None
