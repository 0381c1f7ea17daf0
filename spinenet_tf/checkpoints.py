"""Model weights in and out: TF checkpoints that provably hold every
variable, loading a checkpoint or `.weights.h5` file, and the initial
weights of a fine-tuning run."""

import os
import tempfile
import warnings

import tensorflow as tf

from spinenet_tf.models.backbone import SpineNet
from spinenet_tf.models.resnet import ResNet

INIT_MODULES = ('all', 'backbone', 'all_but_class_head')


def untracked_variables(checkpoint, model):
  """Paths of `model` variables that `checkpoint` does not reach."""
  reachable = {id(o) for o in tf.train.TrackableView(checkpoint).descendants()}
  return [w.path for w in model.weights if id(w) not in reachable]


def model_checkpoint(model, **objects):
  """`tf.train.Checkpoint(model=model, **objects)`; raises ValueError if some
  model variable would not be saved (a layer held where tf.train.Checkpoint
  does not look; see layers.common.CheckpointListsMixin)."""
  checkpoint = tf.train.Checkpoint(model=model, **objects)
  untracked = untracked_variables(checkpoint, model)
  if untracked:
    raise ValueError(
        f'{len(untracked)} of the model\'s {len(model.weights)} variables '
        f'(e.g. {untracked[0]}) are not part of a tf.train.Checkpoint of it, '
        'so no TF checkpoint can hold them; use a .weights.h5 file '
        '(model.save_weights).')
  return checkpoint


def load_checkpoint(model, path):
  """Loads `model`'s weights from a Keras `.weights.h5` file, or a TF
  checkpoint of `tf.train.Checkpoint(model=model)` such as a training run's
  (a prefix, or a directory: its latest checkpoint). Every model variable
  must be restored.

  A file of another architecture raises one ValueError that summarises the
  mismatch (how many variables differ in shape, are missing from the file,
  or are in the file but not in the model, with up to 3 example names);
  some variables may already have been assigned when it is raised.
  """
  path = os.fspath(path)
  if path.endswith('.weights.h5'):
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f'checkpoint {path}: no such file.')
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      try:
        model.load_weights(path)
        failed = None
      except ValueError as e:
        failed = e
    skipped = [w for w in caught if 'Skipping' in str(w.message) or
               'could not be loaded' in str(w.message)]
    if failed is not None or skipped:
      raise ValueError(_mismatch(model, path, _h5_shapes(path),
                                 _saved_shapes(model, 'h5'))) from failed
    for w in caught:  # the harmless ones, as they would have been shown
      warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise FileNotFoundError(f'no TF checkpoint in {path}.')
    path = latest
  try:
    reader = tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(f'checkpoint {path}: not a .weights.h5 file nor a '
                     'readable TF checkpoint (a prefix such as ckpt-10, or '
                     'a directory of checkpoints).') from e
  checkpoint = model_checkpoint(model)
  try:
    checkpoint.read(path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    raise ValueError(_mismatch(
        model, path, _tf_shapes(reader, 'model/'),
        _saved_shapes(model, 'tf'))) from e


_TF_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


def _tf_shapes(reader, prefix):
  """{variable key without prefix and suffix: shape} of a TF checkpoint."""
  return {k[len(prefix):-len(_TF_SUFFIX)]: tuple(shape) for k, shape in
          reader.get_variable_to_shape_map().items()
          if k.startswith(prefix) and k.endswith(_TF_SUFFIX)}


def _h5_shapes(path):
  """{dataset path: shape} of a Keras .weights.h5 file."""
  import h5py  # Keras's own dependency for .weights.h5
  shapes = {}
  with tf.io.gfile.GFile(path, 'rb') as f, h5py.File(f, 'r') as h5:
    h5.visititems(lambda name, item: shapes.__setitem__(
        name, tuple(item.shape)) if isinstance(item, h5py.Dataset) else None)
  return shapes


def _saved_shapes(model, kind):
  """The shapes a file of `model` itself would hold (written to a temporary
  folder and read back: the names are the format's own)."""
  with tempfile.TemporaryDirectory() as directory:
    if kind == 'h5':
      target = os.path.join(directory, 'model.weights.h5')
      model.save_weights(target)
      return _h5_shapes(target)
    prefix = model_checkpoint(model).write(os.path.join(directory, 'ckpt'))
    return _tf_shapes(tf.train.load_checkpoint(prefix), 'model/')


def _mismatch(model, path, found, expected, examples=3):
  """One line: how `found` (the file's {name: shape}) differs from
  `expected` (the model's)."""
  wrong = sorted(k for k in expected
                 if k in found and found[k] != expected[k])
  missing = sorted(k for k in expected if k not in found)
  extra = sorted(k for k in found if k not in expected)
  parts = []
  if wrong:
    shown = ', '.join(f'{k} (file {found[k]}, model {expected[k]})'
                      for k in wrong[:examples])
    parts.append(f'{len(wrong)} differ in shape, e.g. {shown}')
  if missing:
    parts.append(f'{len(missing)} are missing from the file, e.g. '
                 f'{", ".join(missing[:examples])}')
  if extra:
    parts.append(f'{len(extra)} in the file are not in the model, e.g. '
                 f'{", ".join(extra[:examples])}')
  summary = '; '.join(parts) or 'the file does not restore every variable'
  return (f'checkpoint {path} does not match {model.name} (another '
          f'architecture or config?): of the model\'s {len(expected)} '
          f'variables, {summary}.')


def load_initial_weights(model, path, modules='all', rebuild=None):
  """The start of a fine-tuning run: every weight of `model` from `path`
  (as `load_checkpoint`); with modules='backbone' only its backbone's,
  from a backbone `.weights.h5` file (scripts/convert_checkpoint.py's
  output, or `backbone.save_weights`); with 'all_but_class_head' every
  weight of a detector but its class logits, from a detector of another
  number of classes (`rebuild(num_classes)` builds that one). Returns a
  line saying what was restored."""
  if modules not in INIT_MODULES:
    raise ValueError(f'init_checkpoint_modules must be one of '
                     f'{list(INIT_MODULES)}, got {modules!r}.')
  if modules == 'all':
    load_checkpoint(model, path)
    return f'restored all {len(model.weights)} variables from {path}'
  if modules == 'all_but_class_head':
    return _load_all_but_class_head(model, path, rebuild)
  if not os.fspath(path).endswith('.weights.h5'):
    raise ValueError(f'init_checkpoint {path}: modules=backbone reads a '
                     'backbone .weights.h5 file.')
  backbone = _backbone(model)
  backbone.load_weights(path)
  return (f'restored the backbone\'s {len(backbone.weights)} of '
          f'{len(model.weights)} variables from {path}; the rest are '
          'initialised afresh')


def _file_shapes(model, path):
  """(the file's {name: shape}, the model's own {name: shape})."""
  path = os.fspath(path)
  if path.endswith('.weights.h5'):
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f'checkpoint {path}: no such file.')
    return _h5_shapes(path), _saved_shapes(model, 'h5')
  if tf.io.gfile.isdir(path):
    path = tf.train.latest_checkpoint(path) or path
  try:
    reader = tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(f'checkpoint {path}: not a .weights.h5 file nor a '
                     'readable TF checkpoint.') from e
  return _tf_shapes(reader, 'model/'), _saved_shapes(model, 'tf')


def _load_all_but_class_head(model, path, rebuild):
  """Every weight but the class logits' from a detector with another
  number of classes: that detector is rebuilt, loaded whole (so the file
  is checked as `load_checkpoint` does) and copied over."""
  head = getattr(model, 'head', None)
  if head is None or not hasattr(head, 'class_logits') or rebuild is None:
    raise ValueError('init_checkpoint_modules all_but_class_head needs a '
                     f'detector (RetinaNet); {model.name} is not one.')
  logits = {id(w) for w in head.class_logits.weights}
  found, expected = _file_shapes(model, path)
  wrong = {k: found[k] for k in expected if k in found and
           found[k] != expected[k]}
  if not wrong:
    load_checkpoint(model, path)
    return (f'restored all {len(model.weights)} variables from {path} (the '
            'class head has the same number of classes)')
  outputs = {shape[-1] for shape in wrong.values()}
  num_anchors = head.num_anchors
  if len(outputs) != 1 or next(iter(outputs)) % num_anchors:
    raise ValueError(_mismatch(model, path, found, expected))
  num_classes = next(iter(outputs)) // num_anchors
  donor = rebuild(num_classes)
  load_checkpoint(donor, path)
  if len(donor.weights) != len(model.weights):
    raise ValueError(_mismatch(model, path, found, expected))
  kept = []
  for target, source in zip(model.weights, donor.weights):
    if id(target) in logits:
      kept.append(target.path)
    elif tuple(target.shape) != tuple(source.shape):
      raise ValueError(_mismatch(model, path, found, expected))
    else:
      target.assign(source)
  return (f'restored {len(model.weights) - len(kept)} of '
          f'{len(model.weights)} variables from {path}; initialised afresh '
          f'(the file has {num_classes} classes, the model '
          f'{head.num_classes}): {", ".join(kept)}')


def _backbone(model):
  backbone = getattr(model, 'backbone', None)
  if backbone is None:  # a functional classifier holds it as a layer
    backbone = next((layer for layer in model.layers
                     if isinstance(layer, (SpineNet, ResNet))), None)
  if backbone is None:
    raise ValueError(f'{model.name} has no SpineNet or ResNet backbone.')
  return backbone
