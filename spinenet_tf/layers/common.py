"""Conv + BatchNorm + activation, the unit every SpineNet layer is made of,
and the BatchNorm it uses."""

import inspect

import keras

PACKAGE = 'spinenet_tf'
ACTIVATIONS = ('relu', 'swish', 'linear', None)
# What keras.layers.Layer itself takes.
LAYER_KEYWORDS = ('name', 'trainable', 'dtype', 'autocast',
                  'activity_regularizer', 'input_shape', 'input_dim')


def refuse_unknown_keywords(owner, kwargs, known):
  """Raises TypeError naming the keyword arguments of `kwargs` that `owner`
  does not take (`known`: the ones it does)."""
  unknown = sorted(set(kwargs) - set(known))
  if unknown:
    raise TypeError(f'{owner} got unknown keyword argument(s) {unknown}; it '
                    f'takes {sorted(known)}.')


def kernel_settings_config(kernel_initializer, kernel_regularizer):
  """The get_config entries of a model's kernel initializer / regularizer."""
  return {'kernel_initializer': keras.initializers.serialize(
              keras.initializers.get(kernel_initializer)),
          'kernel_regularizer': keras.regularizers.serialize(
              keras.regularizers.get(kernel_regularizer))}


def from_kernel_settings_config(cls, config):
  """`cls(**config)` with the entries of `kernel_settings_config` read back."""
  config = dict(config)
  config['kernel_initializer'] = keras.initializers.deserialize(
      config['kernel_initializer'])
  if config.get('kernel_regularizer') is not None:
    config['kernel_regularizer'] = keras.regularizers.deserialize(
        config['kernel_regularizer'])
  return cls(**config)


def activation_fn(activation):
  """The function of activation name `activation` (None: identity). On the
  TensorFlow backend 'swish' is `tf_swish.swish` (same values, a cheaper
  bfloat16 gradient); elsewhere Keras's."""
  if activation == 'swish' and keras.backend.backend() == 'tensorflow':
    # pylint: disable-next=import-outside-toplevel
    from spinenet_tf.layers import tf_swish
    return tf_swish.swish
  return keras.activations.get(activation or 'linear')


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


class Layer(keras.layers.Layer):
  """keras.layers.Layer that refuses unknown keyword arguments with a
  TypeError naming them (Keras raises ValueError)."""

  def __init__(self, **kwargs):
    if not set(kwargs) <= set(LAYER_KEYWORDS):
      own = {name for cls in type(self).__mro__
             if cls.__module__.startswith(PACKAGE) and '__init__' in vars(cls)
             for name in inspect.signature(cls.__init__).parameters
             if name not in ('self', 'kwargs')}
      refuse_unknown_keywords(type(self).__name__, kwargs,
                              own | set(LAYER_KEYWORDS))
    super().__init__(**kwargs)


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


# Input dtypes the fused kernel takes (it computes in float32, as Keras does).
_FUSED_DTYPES = ('float16', 'bfloat16', 'float32')


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization`, same variables and same results; on
  the TensorFlow backend, 4-D inputs normalised over the last axis run
  TF's fused batch norm: one op forward and one backward instead of Keras's
  moments, multiply and add ops and their gradients (2x faster on CPU for
  a [4, 64, 64, 256] tensor, forward and backward), and at inference
  grappler can fuse it into the preceding convolution. The moving variance
  follows Keras (the biased batch variance), not the fused kernel's
  unbiased one. Other backends, masks, synchronized BN (its moments are
  all-reduced) and float64 take Keras's own path.
  """

  def _use_fused(self, inputs, mask):
    rank = len(inputs.shape)
    return (keras.backend.backend() == 'tensorflow' and mask is None
            and rank == 4 and self.axis in (-1, rank - 1)
            and not self.synchronized and not self.renorm
            and self.center and self.scale and self.epsilon >= 1.001e-5
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES)

  def call(self, inputs, training=None, mask=None):
    if not self._use_fused(inputs, mask):
      return super().call(inputs, training=training, mask=mask)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if training and self.trainable:
      # The kernel updates the moving statistics itself (one op instead of
      # about twenty per layer): new = m * old + (1 - m) * batch, with the
      # batch variance unbiased by n / (n - 1). Keras's is the biased one,
      # so the stored variance goes in scaled by that factor and comes out
      # divided by it: m * old + (1 - m) * biased batch variance.
      if inputs.shape[:-1].is_fully_defined():
        count = inputs.shape[:-1].num_elements()
        bessel = count / max(count - 1, 1)
      else:
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        bessel = count / tf.maximum(count - 1.0, 1.0)
      y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma, self.beta, mean=self.moving_mean,
          variance=self.moving_variance * bessel, epsilon=self.epsilon,
          is_training=True, exponential_avg_factor=1.0 - self.momentum)
      self.moving_mean.assign(mean)
      self.moving_variance.assign(variance / bessel)
    else:
      y, _, _ = tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma, self.beta, mean=self.moving_mean,
          variance=self.moving_variance, epsilon=self.epsilon,
          is_training=False)
    return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvNormAct(NormConfigMixin, Layer):
  """Conv2D (or depthwise) without bias, BatchNorm, then activation.

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
    self.norm = BatchNorm(
        momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn,
        name='norm', dtype=self.dtype_policy)
    self._activation_fn = activation_fn(activation)

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
