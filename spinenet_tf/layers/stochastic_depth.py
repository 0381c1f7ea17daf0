"""Stochastic depth: drop a residual branch per sample while training."""

import keras
from keras import ops

from spinenet_tf.layers.common import PACKAGE, Layer


@keras.saving.register_keras_serializable(package=PACKAGE)
class StochasticDepth(Layer):
  """Zeroes the whole input of a sample with probability `rate` in training.

  Kept samples are scaled by 1 / (1 - rate), so the expectation is unchanged;
  at inference the layer is the identity.
  """

  def __init__(self, rate=0.0, seed=None, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f'{self.name}: rate must be in [0, 1), got {rate}.')
    self.rate = float(rate)
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=None):
    if not training or self.rate == 0.0:
      return inputs
    keep_prob = 1.0 - self.rate
    shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
    noise = keras.random.uniform(shape, seed=self.seed_generator,
                                 dtype=inputs.dtype)
    mask = ops.floor(keep_prob + noise)
    return inputs / keep_prob * mask

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), 'rate': self.rate, 'seed': self.seed}
