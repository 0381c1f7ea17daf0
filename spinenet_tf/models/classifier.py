"""Image classifier: a SpineNet backbone, global pooling, dropout, dense.

The reference classification setup reads the highest output level; `level`
picks another one.
"""

import keras

from spinenet_tf import checks
from spinenet_tf.layers.spinal_dense import SpinalDense
from spinenet_tf.models.backbone import build_backbone

HEADS = ('dense', 'spinal')


def build_classifier(num_classes, backbone='49', input_shape=(256, 256, 3),
                     level=None, dropout_rate=0.0, head='dense',
                     add_head_batch_norm=False, spinal_layer_width=128,
                     spinal_num_layers=4, spinal_num_splits=2,
                     name='spinenet_classifier', **backbone_kwargs):
  """Builds a classification model on a SpineNet backbone.

  Args:
    num_classes: number of output logits.
    backbone: a model id / spec list / YAML path for `build_backbone`, or an
      already built `SpineNet` (or any model returning a dict of features).
    input_shape: (height, width, 3) of the images; sides divisible by 128
      (2**7, the highest level), or None for any such size.
    level: feature level to classify from (a key of the backbone's outputs);
      default the highest level.
    dropout_rate: dropout before the dense layer (before every dense of the
      spinal head).
    head: 'dense' (a single dense layer) or 'spinal' (a SpinalDense on the
      pooled features).
    add_head_batch_norm: BatchNormalization on the features before pooling.
    spinal_layer_width, spinal_num_layers, spinal_num_splits: layer_width,
      num_layers and num_splits of the spinal head.
    **backbone_kwargs: forwarded to `build_backbone` (min_level, max_level,
      activation, stochastic_depth_rate, ...).

  Returns:
    A keras.Model mapping images to logits [batch, num_classes].
  """
  checks.integer('num_classes', num_classes, 1)
  checks.choice('head', head, HEADS)
  checks.number('dropout_rate', dropout_rate, 0, 1, high_open=True)
  checks.boolean('add_head_batch_norm', add_head_batch_norm)
  if not isinstance(backbone, keras.Model):
    backbone = build_backbone(backbone, input_shape, **backbone_kwargs)
  elif backbone_kwargs:
    raise TypeError(f'backbone options {sorted(backbone_kwargs)} given with an '
                    'already built backbone.')
  inputs = keras.Input(shape=tuple(input_shape), name='image')
  features = backbone(inputs)
  levels = sorted(features, key=int)
  key = levels[-1] if level is None else str(level)
  if key not in features:
    raise ValueError(f'level {level!r} is not an output of the backbone; '
                     f'levels are {levels}.')
  x = features[key]
  if add_head_batch_norm:
    x = keras.layers.BatchNormalization(name='head_norm')(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  if head == 'spinal':
    logits = SpinalDense(
        num_classes, layer_width=spinal_layer_width,
        num_layers=spinal_num_layers, num_splits=spinal_num_splits,
        dropout_rate=dropout_rate, name='spinal_head')(x)
  else:
    x = keras.layers.Dropout(dropout_rate, name='dropout')(x)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.RandomNormal(
            stddev=0.01), name='logits')(x)
  return keras.Model(inputs, logits, name=name)
