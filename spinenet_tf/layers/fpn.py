"""FPN decoder (Lin et al. 2017) as Model Garden builds it for RetinaNet.

    decoder = FPN(backbone.output_specs, min_level=3, max_level=7)
    features = decoder(backbone(images))   # {'3': P3, ..., '7': P7}

Levels min_level..top (top = the backbone's highest level): a 1x1 lateral
conv per level, summed top-down with nearest 2x upsampling, then a 3x3
output conv. Levels above top: a 3x3 stride-2 conv on the level below's
output conv (before its BatchNorm), after the activation from the second
one on. Every level ends in its own BatchNorm, without an activation. All
convs have biases. At 256 filters on ResNet-50 this is 3,873,792
parameters, Model Garden's count.
"""

import keras

from spinenet_tf import checks
from spinenet_tf.layers.common import (PACKAGE, BatchNorm, check_activation,
                                       from_kernel_settings_config,
                                       kernel_settings_config)

# FPN keywords besides input_specs and the levels.
FPN_OPTIONS = ('num_filters', 'activation', 'use_sync_bn', 'norm_momentum',
               'norm_epsilon', 'kernel_initializer', 'kernel_regularizer',
               'name', 'trainable')


@keras.saving.register_keras_serializable(package=PACKAGE)
class FPN(keras.Model):
  """Feature pyramid: {str(level): features} -> {str(level): features} for
  min_level..max_level.

  Args:
    input_specs: {str(level): (batch, height, width, channels)} of the
      backbone outputs (e.g. `ResNet.output_specs`); the levels from
      min_level up to the highest are used.
    min_level, max_level: the output levels.
    num_filters: channels of every output level.
    activation: before the stride-2 convs from the second one on.
  """

  def __init__(self, input_specs, min_level=3, max_level=7, num_filters=256,
               activation='relu', use_sync_bn=False, norm_momentum=0.99,
               norm_epsilon=1e-3, kernel_initializer='VarianceScaling',
               kernel_regularizer=None, name='fpn', trainable=True):
    if not isinstance(input_specs, dict) or not input_specs:
      raise ValueError('input_specs must be a non-empty mapping {level: '
                       f'shape}}, got {input_specs!r}.')
    self.input_levels = sorted(int(level) for level in input_specs)
    self.backbone_max_level = self.input_levels[-1]
    checks.integer('min_level', min_level, self.input_levels[0])
    if min_level > self.backbone_max_level:
      raise ValueError(f'min_level must be <= the highest input level '
                       f'{self.backbone_max_level}, got {min_level}.')
    checks.integer('max_level', max_level, self.backbone_max_level)
    missing = sorted(set(range(min_level, self.backbone_max_level + 1))
                     - set(self.input_levels))
    if missing:
      raise ValueError(f'input_specs lacks levels {missing}.')
    checks.integer('num_filters', num_filters, 1)
    check_activation(activation)
    checks.boolean('use_sync_bn', use_sync_bn)
    checks.number('norm_momentum', norm_momentum, 0, 1, high_open=True)
    checks.number('norm_epsilon', norm_epsilon, 0, low_open=True)
    self.min_level, self.max_level = min_level, max_level
    self.num_filters = num_filters
    self.activation = activation
    self.use_sync_bn = use_sync_bn
    self.norm_momentum, self.norm_epsilon = norm_momentum, norm_epsilon
    self.kernel_initializer = kernel_initializer
    self.kernel_regularizer = kernel_regularizer
    self.input_specs = {str(level): tuple(input_specs[level] if level in
                                          input_specs else input_specs[
                                              str(level)])
                        for level in self.input_levels}

    inputs = {key: keras.Input(shape=shape[1:], name=key)
              for key, shape in self.input_specs.items()}
    top = self.backbone_max_level
    merged = {top: self._conv(1, 1, self.lateral_name(top))(inputs[str(top)])}
    for level in range(top - 1, min_level - 1, -1):
      upsampled = keras.layers.UpSampling2D(
          2, interpolation='nearest', name=f'upsample_{level}')(merged[level + 1])
      lateral = self._conv(1, 1, self.lateral_name(level))(inputs[str(level)])
      merged[level] = keras.layers.Add(name=f'sum_{level}')([upsampled, lateral])
    features = {level: self._conv(3, 1, self.output_name(level))(merged[level])
                for level in range(min_level, top + 1)}
    for level in range(top + 1, max_level + 1):
      below = features[level - 1]
      if level > top + 1:
        below = keras.layers.Activation(activation or 'linear',
                                        name=f'act_{level}')(below)
      features[level] = self._conv(3, 2, self.coarser_name(level))(below)
    outputs = {str(level): BatchNorm(
        momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn,
        name=self.norm_name(level))(x) for level, x in features.items()}
    super().__init__(inputs=inputs, outputs=outputs, name=name,
                     trainable=trainable)

  def _conv(self, kernel_size, strides, name):
    return keras.layers.Conv2D(
        self.num_filters, kernel_size, strides, padding='same',
        kernel_initializer=self.kernel_initializer,
        kernel_regularizer=self.kernel_regularizer, name=name)

  @staticmethod
  def lateral_name(level):
    return f'lateral_{level}'

  @staticmethod
  def output_name(level):
    return f'output_{level}'

  @staticmethod
  def coarser_name(level):
    return f'coarser_{level}'

  @staticmethod
  def norm_name(level):
    return f'norm_{level}'

  @property
  def output_specs(self):
    """{level: shape} of the outputs."""
    return {k: tuple(v.shape) for k, v in self.output.items()}

  def get_config(self):
    return {
        'name': self.name, 'trainable': self.trainable,
        'input_specs': {k: list(v) for k, v in self.input_specs.items()},
        'min_level': self.min_level, 'max_level': self.max_level,
        'num_filters': self.num_filters, 'activation': self.activation,
        'use_sync_bn': self.use_sync_bn, 'norm_momentum': self.norm_momentum,
        'norm_epsilon': self.norm_epsilon,
        **kernel_settings_config(self.kernel_initializer,
                                 self.kernel_regularizer),
    }

  @classmethod
  def from_config(cls, config):
    return from_kernel_settings_config(cls, config)
