"""Cross-scale resampling: bring a parent block to a target level and width."""

import keras

from spinenet_tf.layers.common import (PACKAGE, CheckpointListsMixin, Layer,
                                       ConvNormAct, NormConfigMixin,
                                       check_activation, norm_config)


class _ResampleBase(CheckpointListsMixin, NormConfigMixin,
                    Layer):
  """Shared settings: level change, target width, activation, BN."""

  def __init__(self, level_change, target_filters, activation='relu',
               norm_momentum=0.99, norm_epsilon=1e-3, use_sync_bn=False,
               kernel_initializer='VarianceScaling', kernel_regularizer=None,
               **kwargs):
    super().__init__(**kwargs)
    self.level_change = int(level_change)
    self.target_filters = int(target_filters)
    self.activation = check_activation(activation)
    self._set_norm_config(norm_momentum, norm_epsilon, use_sync_bn,
                          kernel_initializer, kernel_regularizer)
    self.upsample = (keras.layers.UpSampling2D(
        2 ** -self.level_change, interpolation='nearest', name='upsample',
        dtype=self.dtype_policy) if self.level_change < 0 else None)

  def _unit(self, filters, kernel_size, name, strides=1, activation=None,
            depthwise=False):
    return ConvNormAct(filters, kernel_size, strides, activation,
                       depthwise=depthwise, name=name, **norm_config(self))

  def _pipeline(self):
    raise NotImplementedError

  def _project_then_upsample(self):
    """The final 1x1 conv + BN, then (going up) the nearest upsampling,
    which commutes with both."""
    return [self.project] + ([self.upsample] if self.upsample else [])

  def build(self, input_shape):
    shape = input_shape
    for layer in self._pipeline():
      layer.build(shape)
      shape = layer.compute_output_shape(shape)

  def call(self, inputs, training=None):
    x = inputs
    for layer in self._pipeline():
      x = layer(x, training=training)
    return x

  def compute_output_shape(self, input_shape):
    shape = input_shape
    for layer in self._pipeline():
      shape = layer.compute_output_shape(shape)
    return shape

  def get_config(self):
    return {**super().get_config(), 'level_change': self.level_change,
            'target_filters': self.target_filters,
            'activation': self.activation, **self._norm_config_dict()}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Resample(_ResampleBase):
  """SpineNet resampling of one parent into a target block.

  1x1 conv to `int(parent_filters * alpha)` + BN + act; to go down k levels a
  3x3/2 conv + BN + act then k-1 3x3/2 max-pools; to go up, nearest
  neighbour upsampling; finally a 1x1 conv + BN to `target_filters`.

  Going up, the final 1x1 conv + BN runs before the upsampling, at the
  parent's resolution: nearest upsampling repeats every pixel equally
  often, so the conv, the BN batch moments and the gradients are those of
  the published order, for 1/4**k of the work.

  Args:
    level_change: target level minus parent level.
    parent_filters: the parent's inner width (its channels / 4 for a
      bottleneck parent).
    alpha: the resampling factor.
    target_filters: channels the target block reads.
  """

  def __init__(self, level_change, parent_filters, alpha, target_filters,
               **kwargs):
    super().__init__(level_change, target_filters, **kwargs)
    self.parent_filters = parent_filters
    self.alpha = float(alpha)
    width = int(parent_filters * self.alpha)
    if width < 1:
      raise ValueError(f'{self.name}: parent_filters * alpha = '
                       f'{parent_filters} * {alpha} leaves no channels.')
    self.reduce = self._unit(width, 1, 'reduce', activation=self.activation)
    self.downsample = (self._unit(width, 3, 'downsample', 2, self.activation)
                       if self.level_change > 0 else None)
    self.pools = [keras.layers.MaxPooling2D(3, 2, padding='same',
                                            name=f'pool{k}',
                                            dtype=self.dtype_policy)
                  for k in range(1, max(self.level_change, 1))]
    self.project = self._unit(self.target_filters, 1, 'project')

  def _pipeline(self):
    middle = [self.downsample] if self.downsample else []
    return [self.reduce] + middle + self.pools + self._project_then_upsample()

  def get_config(self):
    return {**super().get_config(), 'parent_filters': self.parent_filters,
            'alpha': self.alpha}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileResample(_ResampleBase):
  """SpineNet-Mobile resampling: a 3x3/2 depthwise conv + BN + act per level
  down, or nearest upsampling up, then a 1x1 conv + BN to `target_filters`
  (run before the upsampling, as in `Resample`)."""

  def __init__(self, level_change, target_filters, **kwargs):
    super().__init__(level_change, target_filters, **kwargs)
    self.downsample = [self._unit(None, 3, f'downsample{k}', 2, self.activation,
                                  depthwise=True)
                       for k in range(max(self.level_change, 0))]
    self.project = self._unit(self.target_filters, 1, 'project')

  def _pipeline(self):
    return self.downsample + self._project_then_upsample()
