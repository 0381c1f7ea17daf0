"""SpinalNet's fully-connected layer: hidden layers that take the input gradually.

Kabir et al., "SpinalNet: Deep Neural Network with Gradual Input". The input
vector is cut into `num_splits` parts; hidden layer i reads part i mod
num_splits concatenated with the output of hidden layer i-1 (the first one
reads its part alone), and the output dense layer reads the concatenation of
all hidden outputs.
"""

import keras

from spinenet_tf.layers.common import (PACKAGE, CheckpointListsMixin, Layer,
                                       NormConfigMixin)


def split_bounds(num_features, num_splits):
  """[(start, stop)] of each part; the last part takes the remainder."""
  if not isinstance(num_splits, int) or num_splits < 1:
    raise ValueError(f'num_splits must be a positive integer, got '
                     f'{num_splits!r}.')
  if num_splits > num_features:
    raise ValueError(f'num_splits ({num_splits}) is more than the number of '
                     f'input features ({num_features}).')
  size = num_features // num_splits
  starts = [i * size for i in range(num_splits)]
  return list(zip(starts, starts[1:] + [num_features]))


def _check_positive(name, value):
  if not isinstance(value, int) or value < 1:
    raise ValueError(f'{name} must be a positive integer, got {value!r}.')


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpinalDense(CheckpointListsMixin, NormConfigMixin, Layer):
  """Spinal fully-connected layer mapping [..., features] to [..., units].

  Each hidden layer is dropout, dense (with bias), optional BatchNormalization
  and the activation, `layer_width` wide. With input width d not divisible by
  `num_splits`, every part has d // num_splits features and the last part
  takes the remainder.

  Args:
    units: output width (the number of classes for a classification head).
    layer_width: width of every hidden layer.
    num_layers: number of hidden layers.
    num_splits: parts the input is cut into (2 in the paper).
    dropout_rate: dropout before every dense layer, the output one included
      (the authors' code uses 0.5).
    use_batch_norm: BatchNormalization after each hidden dense.
    activation: activation of the hidden layers (a Keras activation name);
      the output is linear.
  """

  def __init__(self, units, layer_width=128, num_layers=4, num_splits=2,
               dropout_rate=0.5, use_batch_norm=True, activation='relu',
               norm_momentum=0.99, norm_epsilon=1e-3, use_sync_bn=False,
               kernel_initializer='glorot_uniform', kernel_regularizer=None,
               **kwargs):
    super().__init__(**kwargs)
    for name, value in (('units', units), ('layer_width', layer_width),
                        ('num_layers', num_layers), ('num_splits', num_splits)):
      _check_positive(name, value)
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'dropout_rate must be in [0, 1), got {dropout_rate!r}.')
    self.units = units
    self.layer_width = layer_width
    self.num_layers = num_layers
    self.num_splits = num_splits
    self.dropout_rate = dropout_rate
    self.use_batch_norm = use_batch_norm
    self.activation = keras.activations.serialize(
        keras.activations.get(activation))
    self._set_norm_config(norm_momentum, norm_epsilon, use_sync_bn,
                          kernel_initializer, kernel_regularizer)
    self._activation_fn = keras.activations.get(activation)
    self.dropout = keras.layers.Dropout(dropout_rate, name='dropout',
                                        dtype=self.dtype_policy)
    dense = dict(kernel_initializer=self.kernel_initializer,
                 kernel_regularizer=self.kernel_regularizer,
                 dtype=self.dtype_policy)
    self.hidden = [keras.layers.Dense(layer_width, name=f'hidden_{i}', **dense)
                   for i in range(num_layers)]
    self.norms = [keras.layers.BatchNormalization(
        momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn,
        name=f'norm_{i}', dtype=self.dtype_policy)
                  for i in range(num_layers)] if use_batch_norm else []
    self.out = keras.layers.Dense(units, name='out', **dense)

  def build(self, input_shape):
    if input_shape[-1] is None:
      raise ValueError(f'{self.name}: the last input dimension must be known.')
    self.bounds = split_bounds(input_shape[-1], self.num_splits)
    batch = tuple(input_shape[:-1])
    previous = 0
    for i, dense in enumerate(self.hidden):
      start, stop = self.bounds[i % self.num_splits]
      dense.build(batch + (stop - start + previous,))
      previous = self.layer_width
    for norm in self.norms:
      norm.build(batch + (self.layer_width,))
    self.out.build(batch + (self.num_layers * self.layer_width,))

  def call(self, inputs, training=None):
    parts = [inputs[..., start:stop] for start, stop in self.bounds]
    outputs = []
    for i, dense in enumerate(self.hidden):
      x = parts[i % self.num_splits]
      if outputs:
        x = keras.ops.concatenate([x, outputs[-1]], axis=-1)
      x = dense(self.dropout(x, training=training))
      if self.use_batch_norm:
        x = self.norms[i](x, training=training)
      outputs.append(self._activation_fn(x))
    x = keras.ops.concatenate(outputs, axis=-1)
    return self.out(self.dropout(x, training=training))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.units,)

  def get_config(self):
    return {**super().get_config(), 'units': self.units,
            'layer_width': self.layer_width, 'num_layers': self.num_layers,
            'num_splits': self.num_splits, 'dropout_rate': self.dropout_rate,
            'use_batch_norm': self.use_batch_norm,
            'activation': self.activation, **self._norm_config_dict()}
