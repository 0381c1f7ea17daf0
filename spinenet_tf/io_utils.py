"""File helpers that work on local and gs:// paths (tf.io.gfile).

    atomic_write('/runs/a/eval_metrics.json', json.dumps(metrics))

A reader never sees a half-written file: the text goes to
`path + '.tmp-<uuid>'`, which is then renamed over `path`. Locally the
rename is atomic; on object stores (gs://) it is a copy and a delete, so a
reader sees the old or the new object, never a partial one.
"""

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
