"""Residual, bottleneck and MBConv blocks (with squeeze-and-excitation)."""

import keras
from keras import ops

from spinenet_tf.layers.common import (PACKAGE, ConvNormAct, Layer,
                                       NormConfigMixin, activation_fn,
                                       check_activation, norm_config)
from spinenet_tf.layers.stochastic_depth import StochasticDepth


class _Block(NormConfigMixin, Layer):
  """Shared settings of the three blocks: strides, activation, BN, drop rate."""

  def __init__(self, strides=1, activation='relu', stochastic_depth_rate=0.0,
               norm_momentum=0.99, norm_epsilon=1e-3, use_sync_bn=False,
               kernel_initializer='VarianceScaling', kernel_regularizer=None,
               **kwargs):
    super().__init__(**kwargs)
    self.strides = strides
    self.activation = check_activation(activation)
    self.stochastic_depth_rate = float(stochastic_depth_rate or 0.0)
    self._set_norm_config(norm_momentum, norm_epsilon, use_sync_bn,
                          kernel_initializer, kernel_regularizer)
    self._activation_fn = activation_fn(activation)
    self.stochastic_depth = (StochasticDepth(
        self.stochastic_depth_rate, name='stochastic_depth',
        dtype=self.dtype_policy) if self.stochastic_depth_rate > 0 else None)

  def _drop_path(self, x, training):
    if self.stochastic_depth is None:
      return x
    return self.stochastic_depth(x, training=training)

  def _unit(self, filters, kernel_size, name, strides=1, activation=None,
            depthwise=False):
    return ConvNormAct(filters, kernel_size, strides, activation,
                       depthwise=depthwise, name=name, **norm_config(self))

  def _build_chain(self, units, input_shape):
    shape = input_shape
    for unit in units:
      unit.build(shape)
      shape = unit.compute_output_shape(shape)
    return shape

  def get_config(self):
    return {**super().get_config(), 'strides': self.strides,
            'activation': self.activation,
            'stochastic_depth_rate': self.stochastic_depth_rate,
            **self._norm_config_dict()}


class _ResNetBlock(_Block):
  """A chain of conv units plus a (projected) shortcut, then the activation.

  Subclasses set `expansion` (output width / `filters`) and `_make_units`.
  """

  expansion = 1

  def __init__(self, filters, use_projection=False, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.use_projection = use_projection
    self.shortcut = (self._unit(filters * self.expansion, 1, 'shortcut',
                                self.strides) if use_projection else None)
    self.units = self._make_units()

  def _make_units(self):
    raise NotImplementedError

  def build(self, input_shape):
    if self.shortcut is not None:
      self.shortcut.build(input_shape)
    self._build_chain(self.units, input_shape)

  def call(self, inputs, training=None):
    shortcut = (inputs if self.shortcut is None
                else self.shortcut(inputs, training=training))
    x = inputs
    for unit in self.units:
      x = unit(x, training=training)
    x = self._drop_path(x, training)
    return self._activation_fn(x + shortcut)

  def compute_output_shape(self, input_shape):
    shape = input_shape
    for unit in self.units:
      shape = unit.compute_output_shape(shape)
    return shape

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters,
            'use_projection': self.use_projection}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlock(_ResNetBlock):
  """Two 3x3 convs with a (projected) shortcut; output width `filters`."""

  def _make_units(self):
    self.conv1 = self._unit(self.filters, 3, 'conv1', self.strides,
                            self.activation)
    self.conv2 = self._unit(self.filters, 3, 'conv2')
    return [self.conv1, self.conv2]


@keras.saving.register_keras_serializable(package=PACKAGE)
class BottleneckBlock(_ResNetBlock):
  """1x1 -> 3x3 -> 1x1 (4x wider) with a (projected) shortcut."""

  expansion = 4

  def _make_units(self):
    self.conv1 = self._unit(self.filters, 1, 'conv1', 1, self.activation)
    self.conv2 = self._unit(self.filters, 3, 'conv2', self.strides,
                            self.activation)
    self.conv3 = self._unit(self.filters * 4, 1, 'conv3')
    return [self.conv1, self.conv2, self.conv3]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SqueezeExcite(Layer):
  """Global pool, 1x1 reduce + relu, 1x1 expand + gate, rescale the input."""

  def __init__(self, reduced_filters, gating='hard_sigmoid', **kwargs):
    super().__init__(**kwargs)
    self.reduced_filters = reduced_filters
    self.gating = gating
    self._gate = keras.activations.get(gating)
    self.reduce = None
    self.expand = None

  def build(self, input_shape):
    channels = input_shape[-1]
    pooled = (None, 1, 1, channels)
    self.reduce = keras.layers.Conv2D(self.reduced_filters, 1, name='reduce',
                                      dtype=self.dtype_policy)
    self.expand = keras.layers.Conv2D(channels, 1, name='expand',
                                      dtype=self.dtype_policy)
    self.reduce.build(pooled)
    self.expand.build(self.reduce.compute_output_shape(pooled))

  def call(self, inputs):
    x = ops.mean(inputs, axis=(1, 2), keepdims=True)
    x = ops.relu(self.reduce(x))
    return inputs * self._gate(self.expand(x))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), 'reduced_filters': self.reduced_filters,
            'gating': self.gating}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MBConvBlock(_Block):
  """Inverted bottleneck: 1x1 expand, 3x3 depthwise, SE, 1x1 project.

  The residual (with stochastic depth) is used when the block keeps the
  width and the resolution. SE reduces to max(1, int(in_filters * se_ratio)).
  """

  def __init__(self, in_filters, out_filters, expand_ratio=6, se_ratio=0.2,
               kernel_size=3, **kwargs):
    super().__init__(**kwargs)
    self.in_filters = in_filters
    self.out_filters = out_filters
    self.expand_ratio = expand_ratio
    self.se_ratio = se_ratio
    self.kernel_size = kernel_size
    expanded = in_filters * expand_ratio
    self.expand = (self._unit(expanded, 1, 'expand', 1, self.activation)
                   if expand_ratio > 1 else None)
    self.depthwise = self._unit(None, kernel_size, 'depthwise', self.strides,
                                self.activation, depthwise=True)
    self.squeeze_excite = (
        SqueezeExcite(max(1, int(in_filters * se_ratio)), name='squeeze_excite',
                      dtype=self.dtype_policy)
        if se_ratio and 0 < se_ratio <= 1 else None)
    self.project = self._unit(out_filters, 1, 'project')
    self.use_residual = in_filters == out_filters and self.strides == 1

  def _units(self):
    return [u for u in (self.expand, self.depthwise, self.squeeze_excite,
                        self.project) if u is not None]

  def build(self, input_shape):
    if input_shape[-1] != self.in_filters:
      raise ValueError(f'{self.name}: expected {self.in_filters} input channels, '
                       f'got {input_shape[-1]}.')
    self._build_chain(self._units(), input_shape)

  def call(self, inputs, training=None):
    x = inputs
    for unit in self._units():
      x = unit(x, training=training)
    if self.use_residual:
      x = self._drop_path(x, training) + inputs
    return x

  def compute_output_shape(self, input_shape):
    shape = self.depthwise.compute_output_shape(input_shape)
    return tuple(shape[:-1]) + (self.out_filters,)

  def get_config(self):
    return {**super().get_config(), 'in_filters': self.in_filters,
            'out_filters': self.out_filters, 'expand_ratio': self.expand_ratio,
            'se_ratio': self.se_ratio, 'kernel_size': self.kernel_size}
