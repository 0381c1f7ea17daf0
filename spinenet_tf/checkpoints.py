"""Model weights in and out: TF checkpoints that provably hold every
variable, loading a checkpoint or `.weights.h5` file, and the initial
weights of a fine-tuning run."""

import os

import tensorflow as tf

from spinenet_tf.models.backbone import SpineNet

INIT_MODULES = ('all', 'backbone')


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
  must be restored."""
  path = os.fspath(path)
  if path.endswith('.weights.h5'):
    model.load_weights(path)
    return
  if os.path.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise FileNotFoundError(f'no TF checkpoint in {path}.')
    path = latest
  checkpoint = model_checkpoint(model)
  checkpoint.read(path).expect_partial().assert_existing_objects_matched()


def load_initial_weights(model, path, modules='all'):
  """The start of a fine-tuning run: every weight of `model` from `path`
  (as `load_checkpoint`), or with modules='backbone' only its SpineNet's,
  from a backbone `.weights.h5` file (scripts/convert_checkpoint.py's
  output, or `backbone.save_weights`)."""
  if modules not in INIT_MODULES:
    raise ValueError(f'init_checkpoint_modules must be one of '
                     f'{list(INIT_MODULES)}, got {modules!r}.')
  if modules == 'all':
    load_checkpoint(model, path)
    return
  if not os.fspath(path).endswith('.weights.h5'):
    raise ValueError(f'init_checkpoint {path}: modules=backbone reads a '
                     'backbone .weights.h5 file.')
  _backbone(model).load_weights(path)


def _backbone(model):
  backbone = getattr(model, 'backbone', None)
  if backbone is None:  # a functional classifier holds it as a layer
    backbone = next((layer for layer in model.layers
                     if isinstance(layer, SpineNet)), None)
  if backbone is None:
    raise ValueError(f'{model.name} has no SpineNet backbone.')
  return backbone
