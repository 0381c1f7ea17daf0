"""Conv + BatchNorm + activation, the unit every SpineNet layer is made of."""

import keras

PACKAGE = 'spinenet_tf'
ACTIVATIONS = ('relu', 'swish', 'linear', None)


def check_activation(activation):
  if activation not in ACTIVATIONS:
    raise ValueError(f'activation must be one of {list(ACTIVATIONS)}, got '
                     f'{activation!r}.')
  return activation


def norm_config(layer):
  """The BatchNorm settings a composite layer passes down to its units."""
  return dict(norm_momentum=layer.norm_momentum,
              norm_epsilon=layer.norm_epsilon,
              use_sync_bn=layer.use_sync_bn,
              kernel_initializer=layer.kernel_initializer,
              kernel_regularizer=layer.kernel_regularizer,
              dtype=layer.dtype_policy)


def _listed_layers(prefix, value):
  """(name, layer) pairs for the layers inside nested lists and dicts."""
  items = value.items() if isinstance(value, dict) else enumerate(value)
  for key, item in items:
    name = f'{prefix}[{key}]'
    if isinstance(item, keras.layers.Layer):
      yield name, item
    elif isinstance(item, (list, dict)):
      yield from _listed_layers(name, item)


class CheckpointListsMixin:
  """Makes `tf.train.Checkpoint` save sublayers held in lists and dicts.

  Keras 3 (3.15 on TensorFlow) counts such layers in `weights` and in
  `.weights.h5` files but does not report them as checkpoint dependencies,
  so a `tf.train.Checkpoint(model=...)` silently left their variables out.
  This names them `attr[key]` in the checkpoint; `.weights.h5` is unchanged.
  """

  def _trackable_children(self, save_type='checkpoint', **kwargs):
    children = super()._trackable_children(save_type, **kwargs)
    if save_type == 'checkpoint':
      for attr, value in vars(self).items():
        if not attr.startswith('_') and isinstance(value, (list, dict)):
          children.update(_listed_layers(attr, value))
    return children


class NormConfigMixin:
  """Stores and serializes the BatchNorm and kernel settings of a layer."""

  def _set_norm_config(self, norm_momentum, norm_epsilon, use_sync_bn,
                       kernel_initializer, kernel_regularizer):
    self.norm_momentum = norm_momentum
    self.norm_epsilon = norm_epsilon
    self.use_sync_bn = use_sync_bn
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

  def _norm_config_dict(self):
    return dict(
        norm_momentum=self.norm_momentum, norm_epsilon=self.norm_epsilon,
        use_sync_bn=self.use_sync_bn,
        kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer))


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvNormAct(NormConfigMixin, keras.layers.Layer):
  """Conv2D (or depthwise) without bias, BatchNormalization, then activation.

  Args:
    filters: output channels (ignored when `depthwise`).
    kernel_size, strides: of the convolution ('same' padding).
    activation: 'relu', 'swish' or None (no activation).
    depthwise: use a DepthwiseConv2D.
    use_sync_bn: BatchNormalization(synchronized=True) across replicas.
  """

  def __init__(self, filters=None, kernel_size=1, strides=1, activation=None,
               depthwise=False, norm_momentum=0.99, norm_epsilon=1e-3,
               use_sync_bn=False, kernel_initializer='VarianceScaling',
               kernel_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    if not depthwise and not (isinstance(filters, int) and filters > 0):
      raise ValueError(f'{self.name}: filters must be a positive integer, got '
                       f'{filters!r}.')
    self.filters = filters
    self.kernel_size = kernel_size
    self.strides = strides
    self.activation = check_activation(activation)
    self.depthwise = depthwise
    self._set_norm_config(norm_momentum, norm_epsilon, use_sync_bn,
                          kernel_initializer, kernel_regularizer)
    common = dict(kernel_size=kernel_size, strides=strides, padding='same',
                  use_bias=False, dtype=self.dtype_policy)
    if depthwise:
      self.conv = keras.layers.DepthwiseConv2D(
          depthwise_initializer=self.kernel_initializer,
          depthwise_regularizer=self.kernel_regularizer, name='conv', **common)
    else:
      self.conv = keras.layers.Conv2D(
          filters, kernel_initializer=self.kernel_initializer,
          kernel_regularizer=self.kernel_regularizer, name='conv', **common)
    self.norm = keras.layers.BatchNormalization(
        momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn,
        name='norm', dtype=self.dtype_policy)
    self._activation_fn = keras.activations.get(activation or 'linear')

  def build(self, input_shape):
    self.conv.build(input_shape)
    self.norm.build(self.conv.compute_output_shape(input_shape))

  def call(self, inputs, training=None):
    x = self.norm(self.conv(inputs), training=training)
    return x if self.activation in (None, 'linear') else self._activation_fn(x)

  def compute_output_shape(self, input_shape):
    return self.conv.compute_output_shape(input_shape)

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters,
            'kernel_size': self.kernel_size, 'strides': self.strides,
            'activation': self.activation, 'depthwise': self.depthwise,
            **self._norm_config_dict()}
