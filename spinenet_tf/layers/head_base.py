"""What every detection head holds: depth, width, activation, BatchNorm and
kernel settings, their config, and the BatchNorm + activation they apply."""

import keras

from spinenet_tf.layers.common import (BatchNorm, CheckpointListsMixin,
                                       Layer, activation_fn, check_activation)


class HeadBase(CheckpointListsMixin, Layer):
  """Settings every head shares (RetinaNet's, Mask R-CNN's)."""

  def __init__(self, num_convs, num_filters, activation, use_sync_bn,
               norm_momentum, norm_epsilon, kernel_regularizer, **kwargs):
    super().__init__(**kwargs)
    self.num_convs = num_convs
    self.num_filters = num_filters
    self.activation = check_activation(activation)
    self.use_sync_bn = use_sync_bn
    self.norm_momentum = norm_momentum
    self.norm_epsilon = norm_epsilon
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self._activation_fn = activation_fn(activation)

  def level_shape(self, input_shape):
    """The shape of the first of `self.levels` in a dict of feature shapes;
    a ValueError names the levels missing."""
    missing = [level for level in self.levels if level not in input_shape]
    if missing:
      raise ValueError(f'{self.name}: features lack levels {missing}; got '
                       f'{sorted(input_shape)}.')
    return tuple(input_shape[self.levels[0]])

  def norm(self, name):
    """A BatchNorm with the head's settings."""
    return BatchNorm(momentum=self.norm_momentum, epsilon=self.norm_epsilon,
                     synchronized=self.use_sync_bn, name=name,
                     dtype=self.dtype_policy)

  def norm_act(self, norm, x, training):
    return self._activation_fn(norm(x, training=training))

  def get_config(self):
    return {**super().get_config(), 'num_convs': self.num_convs,
            'num_filters': self.num_filters, 'activation': self.activation,
            'use_sync_bn': self.use_sync_bn,
            'norm_momentum': self.norm_momentum,
            'norm_epsilon': self.norm_epsilon,
            'kernel_regularizer': keras.regularizers.serialize(
                self.kernel_regularizer)}
