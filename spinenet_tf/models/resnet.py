"""ResNet-50/101/152 (the paper's baseline) from our bottleneck blocks.

`build_resnet('resnet50', (640, 640, 3))` returns a `ResNet` whose output
is a dict {'2': C2, ..., '5': C5}. The variant is Model Garden's default
one: 7x7/2 stem conv + 3x3/2 max-pool, the stride in each level's first
3x3 conv, a projection shortcut on the first block of every level.

Layer names: `stem`, `stem_pool`, then `level{L}_block{i}` (see
`block_name`), in the order the blocks run.
"""

import re

import keras

from spinenet_tf import checks
from spinenet_tf.layers import BottleneckBlock, ConvNormAct
from spinenet_tf.layers.common import (PACKAGE, check_activation,
                                       from_kernel_settings_config,
                                       kernel_settings_config,
                                       refuse_unknown_keywords)

MIN_LEVEL, MAX_LEVEL = 2, 5
# Bottleneck blocks per level 2..5 and the widths of their 3x3 convs.
BLOCK_REPEATS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
LEVEL_FILTERS = (64, 128, 256, 512)
STEM_FILTERS = 64


def resolve_model_id(model_id):
  """'resnet50', 'ResNet-50', 'resnet_50' -> 50; else ValueError."""
  match = re.fullmatch(r'resnet[-_ ]?(\d+)', str(model_id).lower())
  depth = int(match.group(1)) if match else None
  if depth not in BLOCK_REPEATS:
    raise ValueError(f'model_id must be one of '
                     f'{[f"resnet{d}" for d in BLOCK_REPEATS]}, got '
                     f'{model_id!r}.')
  return depth


def is_resnet_id(model_id):
  """Whether `model_id` names a ResNet (any accepted spelling)."""
  try:
    resolve_model_id(model_id)
  except ValueError:
    return False
  return True


def block_name(level, index):
  """Layer name of block `index` (0-based) of `level` (2..5)."""
  return f'level{level}_block{index}'


def _scaled(filters, depth_multiplier):
  return max(1, int(filters * depth_multiplier))


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResNet(keras.Model):
  """ResNet as a functional Keras model: images -> {str(level): features}
  for levels 2..5.

  Args:
    model_id: 'resnet50', 'resnet101' or 'resnet152' (or 'ResNet-50', ...).
    input_shape: (height, width, 3); None for any size.
    depth_multiplier: scales every conv width, the stem's too (Model
      Garden's `depth_multiplier`); widths are int(width * multiplier).
    activation: 'relu' or 'swish'.
    use_sync_bn: synchronized BatchNorm across replicas.
    stochastic_depth_rate: the blocks of level L drop their residual branch
      with rate * L / 5 (Model Garden's `init_stochastic_depth_rate`).
  """

  def __init__(self, model_id='resnet50', input_shape=(None, None, 3),
               depth_multiplier=1.0, activation='relu', use_sync_bn=False,
               norm_momentum=0.99, norm_epsilon=1e-3,
               stochastic_depth_rate=0.0,
               kernel_initializer='VarianceScaling', kernel_regularizer=None,
               name='resnet', trainable=True):
    depth = resolve_model_id(model_id)
    input_shape = checks.image_shape('input_shape', input_shape)
    checks.number('depth_multiplier', depth_multiplier, 0, low_open=True)
    check_activation(activation)
    checks.boolean('use_sync_bn', use_sync_bn)
    checks.number('norm_momentum', norm_momentum, 0, 1, high_open=True)
    checks.number('norm_epsilon', norm_epsilon, 0, low_open=True)
    checks.number('stochastic_depth_rate', stochastic_depth_rate, 0, 1,
                  high_open=True)
    unit_args = dict(norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
                     use_sync_bn=use_sync_bn,
                     kernel_initializer=kernel_initializer,
                     kernel_regularizer=kernel_regularizer)
    inputs = keras.Input(shape=input_shape, name='image')
    x = ConvNormAct(_scaled(STEM_FILTERS, depth_multiplier), 7, 2, activation,
                    name='stem', **unit_args)(inputs)
    x = keras.layers.MaxPooling2D(3, 2, padding='same', name='stem_pool')(x)
    outputs = {}
    for level, repeats, filters in zip(range(MIN_LEVEL, MAX_LEVEL + 1),
                                       BLOCK_REPEATS[depth], LEVEL_FILTERS):
      for index in range(repeats):
        x = BottleneckBlock(
            _scaled(filters, depth_multiplier), use_projection=index == 0,
            strides=2 if index == 0 and level > MIN_LEVEL else 1,
            activation=activation,
            stochastic_depth_rate=stochastic_depth_rate * level / MAX_LEVEL,
            name=block_name(level, index), **unit_args)(x)
      outputs[str(level)] = x
    super().__init__(inputs=inputs, outputs=outputs, name=name,
                     trainable=trainable)
    self.model_id = f'resnet{depth}'
    self.image_shape = input_shape
    self.depth_multiplier = float(depth_multiplier)
    self.activation = activation
    self.use_sync_bn = use_sync_bn
    self.norm_momentum = norm_momentum
    self.norm_epsilon = norm_epsilon
    self.stochastic_depth_rate = float(stochastic_depth_rate)
    self.kernel_initializer = kernel_initializer
    self.kernel_regularizer = kernel_regularizer

  @property
  def output_specs(self):
    """{level: shape} of the outputs."""
    return {k: tuple(v.shape) for k, v in self.output.items()}

  def get_config(self):
    return {
        'name': self.name, 'trainable': self.trainable,
        'model_id': self.model_id, 'input_shape': list(self.image_shape),
        'depth_multiplier': self.depth_multiplier,
        'activation': self.activation, 'use_sync_bn': self.use_sync_bn,
        'norm_momentum': self.norm_momentum,
        'norm_epsilon': self.norm_epsilon,
        'stochastic_depth_rate': self.stochastic_depth_rate,
        **kernel_settings_config(self.kernel_initializer,
                                 self.kernel_regularizer),
    }

  @classmethod
  def from_config(cls, config):
    return from_kernel_settings_config(cls, config)


RESNET_OPTIONS = ('depth_multiplier', 'activation', 'use_sync_bn',
                  'norm_momentum', 'norm_epsilon', 'stochastic_depth_rate',
                  'kernel_initializer', 'kernel_regularizer', 'name',
                  'trainable')


def build_resnet(model_id='resnet50', input_shape=(None, None, 3), **kwargs):
  """Builds a ResNet backbone (levels 2..5).

  Args:
    model_id: 'resnet50', 'resnet101', 'resnet152' (also 'ResNet-50', ...).
    input_shape: (height, width, 3); None for any size.
    **kwargs: `ResNet` options (`RESNET_OPTIONS`); anything else is a
      TypeError naming it.

  Returns:
    A `ResNet` keras.Model mapping images to {str(level): features}.
  """
  refuse_unknown_keywords('build_resnet', kwargs, RESNET_OPTIONS)
  return ResNet(model_id, input_shape, **kwargs)
