"""Swaps the head of a Keras classification model for a spinal one.

Transfer learning as the SpinalNet authors did it: keep a (pretrained) base,
replace its final classification layer(s) by a SpinalDense.
"""

import keras

from spinenet_tf.layers.spinal_dense import SpinalDense


def _last_dense(model):
  for layer in reversed(model.layers):
    if isinstance(layer, keras.layers.Dense):
      return layer
  raise ValueError(f'model {model.name!r} has no Dense layer; pass '
                   'feature_layer.')


def with_spinal_head(model, num_classes=None, feature_layer=None,
                     freeze_base=False, name=None, **spinal_kwargs):
  """Returns a model whose head is SpinalDense(..., units=num_classes).

  The features are the input of the model's last Dense layer, or the output of
  the layer named `feature_layer`; a 4-D feature map is global-average pooled
  first. The new model shares the base layers (and their weights) with
  `model` and returns logits.

  Args:
    model: a functional or Sequential keras.Model with a single output.
    num_classes: output width; default the width of `model`'s output.
    feature_layer: name of the layer whose output feeds the new head.
    freeze_base: make every layer of `model` non-trainable (shared, so in
      `model` too); BatchNormalization then runs in inference mode.
    name: name of the new model; default `model.name + '_spinal'`.
    **spinal_kwargs: SpinalDense options (layer_width, num_layers, num_splits,
      dropout_rate, ...).
  """
  try:
    inputs, outputs = model.inputs, model.outputs
  except AttributeError:
    inputs = outputs = None
  if not inputs or len(outputs) != 1:
    raise ValueError(f'model {model.name!r} must be a built functional or '
                     'Sequential model with one output.')
  if feature_layer is None:
    features = _last_dense(model).input
  else:
    features = model.get_layer(feature_layer).output
  if len(features.shape) == 4:
    features = keras.layers.GlobalAveragePooling2D(name='spinal_pool')(features)
  elif len(features.shape) != 2:
    raise ValueError(f'features must be [batch, features] or a 4-D feature '
                     f'map, got shape {features.shape}.')
  if freeze_base:
    for layer in model.layers:
      layer.trainable = False
  logits = SpinalDense(num_classes or outputs[0].shape[-1], name='spinal_head',
                       **spinal_kwargs)(features)
  return keras.Model(inputs[0] if len(inputs) == 1 else inputs, logits,
                     name=name or f'{model.name}_spinal')
