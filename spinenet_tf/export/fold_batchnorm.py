"""Inference copies of a model with every BatchNorm folded into its conv.

    folded = fold_batchnorm(model)               # float32
    folded = fold_batchnorm(model, 'bfloat16')   # bfloat16 weights and compute
    outputs = folded(images)                     # same structure as model's

A conv (kernel W, bias b, 0 without one) followed by inference-mode BN
(gamma, beta, mean, variance, epsilon) equals a conv with
  W' = W * s,  b' = (b - mean) * s + beta,  s = gamma / sqrt(variance + eps),
s scaling each output channel. The copy replaces the conv and BN of every
`ConvNormAct` by one `FoldedConv` (conv + BiasAdd, which grappler fuses into
one op on CPU; Keras 3's BN is a Mul and an Add it cannot fuse), and a
RetinaNet head by a `FoldedRetinaNetHead`: its convs are shared across
levels but each level has its own BN, so the folded head holds one conv per
level. Other layers (SE convs, fusion, pooling, dense) are copied unchanged.
The original model is never modified. The copy is for inference and export
only (TensorFlow ops, no training).
"""


import keras
import numpy as np
import tensorflow as tf

from spinenet_tf import compat
from spinenet_tf.layers.common import ConvNormAct, activation_fn
from spinenet_tf.models.retinanet import RetinaNet


def _numpy(variable):
  return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)


def _is_depthwise(conv):
  return isinstance(conv, keras.layers.DepthwiseConv2D)


def fold_conv_and_norm(conv, norm=None):
  """(kernel, bias), float32 numpy, of Keras conv `conv` (Conv2D or
  DepthwiseConv2D, bias or not) followed by BatchNormalization `norm`
  (None: the conv alone). Computed in float64."""
  depthwise = _is_depthwise(conv)
  kernel = _numpy(conv.kernel)  # [kh, kw, in, out] / [kh, kw, channels, 1]
  bias = (_numpy(conv.bias) if conv.use_bias else
          np.zeros(kernel.shape[2 if depthwise else 3]))
  if norm is not None:
    gamma = _numpy(norm.gamma) if norm.scale else 1.0
    beta = _numpy(norm.beta) if norm.center else 0.0
    scale = gamma / np.sqrt(_numpy(norm.moving_variance) + norm.epsilon)
    bias = (bias - _numpy(norm.moving_mean)) * scale + beta
    kernel = kernel * (scale[:, None] if depthwise else scale)
  return kernel.astype(np.float32), bias.astype(np.float32)


class FoldedConv(keras.layers.Layer):
  """Conv2D or depthwise conv ('same' padding) + bias, from fixed values.

  Args:
    kernel: [kh, kw, in, out] (depthwise: [kh, kw, channels, 1]).
    bias: [out].
    strides: int.
    depthwise: a depthwise convolution.
  """

  def __init__(self, kernel, bias, strides=1, depthwise=False, **kwargs):
    super().__init__(**kwargs)
    self.strides = int(strides)
    self.depthwise = depthwise
    self.kernel = self.add_weight(shape=kernel.shape, name='kernel',
                                  initializer='zeros', trainable=False)
    self.bias = self.add_weight(shape=bias.shape, name='bias',
                                initializer='zeros', trainable=False)
    self.kernel.assign(kernel)
    self.bias.assign(bias)
    self.built = True

  @classmethod
  def from_layers(cls, conv, norm=None, **kwargs):
    """The fold of Keras conv `conv` and BatchNormalization `norm`."""
    strides = tuple(conv.strides)
    if (conv.padding != 'same' or tuple(conv.dilation_rate) != (1, 1) or
        strides[0] != strides[1] or
        getattr(conv, 'depth_multiplier', 1) != 1):
      raise ValueError(f'{conv.name}: only convs with "same" padding, equal '
                       'strides, no dilation and depth multiplier 1 fold.')
    kernel, bias = fold_conv_and_norm(conv, norm)
    return cls(kernel, bias, strides[0], _is_depthwise(conv), **kwargs)

  def call(self, inputs):
    strides = [1, self.strides, self.strides, 1]
    if self.depthwise:
      x = tf.nn.depthwise_conv2d(inputs, self.kernel, strides, 'SAME')
    else:
      x = tf.nn.conv2d(inputs, self.kernel, strides, 'SAME')
    return tf.nn.bias_add(x, self.bias)

  def compute_output_shape(self, input_shape):
    size = [None if s is None else -(-s // self.strides)
            for s in input_shape[1:3]]
    channels = input_shape[-1] if self.depthwise else self.kernel.shape[-1]
    return (input_shape[0], *size, channels)


class FoldedRetinaNetHead(keras.layers.Layer):
  """A `RetinaNetHead` with each level's BN folded into its own tower convs.

  Call takes {str(level): features} and returns (class_outputs,
  box_outputs), as the head does.
  """

  def __init__(self, head, **kwargs):
    super().__init__(name=head.name, **kwargs)
    self.levels = list(head.levels)
    self._activation_fn = activation_fn(head.activation)
    self.towers, self.output_convs = {}, {}
    for subnet, convs, norms, output in (
        ('class', head.class_convs, head.class_norms, head.class_logits),
        ('box', head.box_convs, head.box_norms, head.box_deltas)):
      self.towers[subnet] = {
          level: [FoldedConv.from_layers(conv, norm,
                                         name=f'{subnet}_conv{i}_level{level}')
                  for i, (conv, norm) in enumerate(zip(convs, norms[level]))]
          for level in self.levels}
      self.output_convs[subnet] = FoldedConv.from_layers(
          output, name=f'{subnet}_output')
    self.built = True

  def call(self, features):
    results = {'class': {}, 'box': {}}
    for level in self.levels:
      for subnet, level_outputs in results.items():
        x = features[level]
        for conv in self.towers[subnet][level]:
          x = self._activation_fn(conv(x))
        level_outputs[level] = self.output_convs[subnet](x)
    return results['class'], results['box']


def _units(model):
  return [layer for layer in compat.sublayers(model)
          if isinstance(layer, ConvNormAct)]


def _folded_copy(model):
  """A copy of `model` (under the current dtype policy) with its
  ConvNormAct units folded."""
  copy = model.__class__.from_config(model.get_config())
  copy.set_weights(model.get_weights())
  originals, copies = _units(model), _units(copy)
  if [u.path for u in originals] != [u.path for u in copies]:
    raise ValueError(f'{model.name}: its copy has different layers.')
  for original, unit in zip(originals, copies):
    compat.replace_sublayer(unit, 'conv', FoldedConv.from_layers(
        original.conv, original.norm, name='conv', dtype=unit.dtype_policy))
    compat.replace_sublayer(unit, 'norm', keras.layers.Identity(
        name='norm', dtype=unit.dtype_policy))
  return copy


def _fold_retinanet(model):
  """A RetinaNet's folded copy: the backbone's units folded, the head's
  shared convs with their per-level norms in a `FoldedRetinaNetHead`."""
  backbone = _folded_copy(model.backbone)
  head = FoldedRetinaNetHead(model.head)
  inputs = keras.Input(shape=model.image_shape, name='image')
  features = backbone(inputs)
  if model.decoder is not None:  # the FPN's BNs follow biased convs: kept
    features = _folded_copy(model.decoder)(features)
  class_outputs, box_outputs = head(features)
  return keras.Model(inputs, {'class_outputs': class_outputs,
                              'box_outputs': box_outputs},
                     name=f'{model.name}_folded')


# Models whose folding is not a copy with each unit folded: model class ->
# fold(model) (the first class `model` is an instance of).
FOLDERS = {RetinaNet: _fold_retinanet}


def fold_batchnorm(model, dtype=None):
  """An inference copy of `model` with BatchNorm folded into the convs.

  Args:
    model: a `RetinaNet` (or another class of FOLDERS), a classifier from
      `build_classifier`, a `SpineNet`, or any Keras model made of
      `ConvNormAct` units.
    dtype: dtype policy of the copy ('float32', 'bfloat16', ...); default
      the global policy. Folding itself is computed in float64.

  Returns:
    A keras.Model with the same inputs and output structure.
  """
  fold = next((f for cls, f in FOLDERS.items() if isinstance(model, cls)),
              _folded_copy)
  with compat.dtype_policy_scope(dtype):
    return fold(model)


def max_abs_difference(model, folded, images):
  """Largest |folded(images) - model(images)| over all outputs (inference
  mode, compared in float32)."""
  expected = tf.nest.flatten(model(images, training=False))
  actual = tf.nest.flatten(folded(images, training=False))
  return max(float(tf.reduce_max(tf.abs(tf.cast(a, tf.float32) -
                                        tf.cast(e, tf.float32))))
             for a, e in zip(actual, expected))
