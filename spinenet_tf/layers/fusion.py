"""Fusion of resampled parents into a block input: sum (optionally learned
weighted sum) followed by the activation."""

import keras
from keras import ops

from spinenet_tf.layers.common import (PACKAGE, Layer, activation_fn,
                                       check_activation)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BlockFusion(Layer):
  """Sums a list of same-shaped tensors and applies `activation`.

  With `weighted=True` each input gets a learned scalar weight w_i (init 1);
  the output is sum(relu(w_i) * x_i) / (sum(relu(w_i)) + 1e-4), the fast
  normalised fusion of EfficientDet.
  """

  def __init__(self, activation='relu', weighted=False, **kwargs):
    super().__init__(**kwargs)
    self.activation = check_activation(activation)
    self.weighted = weighted
    self._activation_fn = activation_fn(activation)

  def build(self, input_shape):
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 1:
      raise ValueError(f'{self.name}: expects a list of inputs.')
    shapes = {tuple(s[1:]) for s in input_shape}
    if len(shapes) != 1:
      raise ValueError(f'{self.name}: inputs must share a shape, got '
                       f'{[tuple(s) for s in input_shape]}.')
    if self.weighted:
      self.fusion_weights = self.add_weight(
          name='fusion_weights', shape=(len(input_shape),),
          initializer='ones')

  def call(self, inputs):
    if self.weighted:
      weights = ops.relu(ops.cast(self.fusion_weights, inputs[0].dtype))
      total = ops.sum(weights) + 1e-4
      x = sum(inputs[i] * weights[i] for i in range(len(inputs))) / total
    else:
      x = inputs[0]
      for other in inputs[1:]:
        x = x + other
    return self._activation_fn(x)

  def compute_output_shape(self, input_shape):
    return input_shape[0]

  def get_config(self):
    return {**super().get_config(), 'activation': self.activation,
            'weighted': self.weighted}
