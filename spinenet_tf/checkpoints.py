"""TF checkpoints of a model that provably hold every one of its variables."""

import tensorflow as tf


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
