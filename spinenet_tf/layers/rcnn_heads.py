"""The three heads of Mask R-CNN: RPN, Fast R-CNN (box) and mask.

Layouts and initialisers are Model Garden's (`RPNHead`, `DetectionHead`,
`MaskHead`), so the parameter counts agree: every conv keeps its bias and is
followed by BatchNorm and the activation.

- `RPNHead`: per level, `num_convs` 3x3 convs shared across levels with a
  BatchNorm per level, then 1x1 convs to an objectness logit and 4 box
  deltas per anchor.
- `FastRCNNHead`: on RoI features [B, R, S, S, C]: `num_convs` 3x3 convs,
  flatten, `num_fcs` dense layers, then class logits [B, R, num_classes]
  and class-specific box deltas [B, R, num_classes * 4].
- `MaskHead`: on RoI features [B, R, S, S, C] and the RoIs' classes [B, R]:
  `num_convs` 3x3 convs, a 2x2 stride-2 transposed conv, a 1x1 conv to one
  mask logit map per class; returns the RoI class's map [B, R, 2S, 2S].
"""

import keras
from keras import ops

from spinenet_tf.layers.common import PACKAGE
from spinenet_tf.layers.head_base import HeadBase

def _he_fan_out():
  """He-normal on fan-out (Model Garden's instance heads)."""
  return keras.initializers.VarianceScaling(
      scale=2.0, mode='fan_out', distribution='untruncated_normal')


class _Head(HeadBase):
  """A head whose convs keep their bias, initialised as given."""

  def _roi_tower(self):
    """`num_convs` 3x3 convs (He fan-out) and their norms."""
    return ([self._conv(self.num_filters, 3, _he_fan_out(), f'conv{i}')
             for i in range(self.num_convs)],
            [self.norm(f'conv_norm{i}') for i in range(self.num_convs)])

  def _conv(self, filters, kernel_size, initializer, name):
    return keras.layers.Conv2D(
        filters, kernel_size, padding='same', kernel_initializer=initializer,
        kernel_regularizer=self.kernel_regularizer, name=name,
        dtype=self.dtype_policy)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RPNHead(_Head):
  """Objectness logits and box deltas for a dict of features by level.

  Call returns (score_outputs, box_outputs), dicts {str(level):
  [B, H, W, num_anchors]} and {str(level): [B, H, W, num_anchors * 4]}.
  """

  def __init__(self, min_level=3, max_level=7, num_anchors=3, num_convs=1,
               num_filters=256, activation='relu', use_sync_bn=False,
               norm_momentum=0.99, norm_epsilon=1e-3, kernel_regularizer=None,
               **kwargs):
    super().__init__(num_convs, num_filters, activation, use_sync_bn,
                     norm_momentum, norm_epsilon, kernel_regularizer, **kwargs)
    self.min_level = min_level
    self.max_level = max_level
    self.num_anchors = num_anchors
    self.levels = [str(level) for level in range(min_level, max_level + 1)]
    normal = keras.initializers.RandomNormal
    self.convs = [self._conv(num_filters, 3, normal(stddev=0.01), f'conv{i}')
                  for i in range(num_convs)]
    self.norms = {level: [self.norm(f'norm{i}_level{level}')
                          for i in range(num_convs)] for level in self.levels}
    self.scores = self._conv(num_anchors, 1, normal(stddev=1e-5), 'scores')
    self.boxes = self._conv(num_anchors * 4, 1, normal(stddev=1e-5), 'boxes')

  def build(self, input_shape):
    shape = self.level_shape(input_shape)
    tower_shape = shape[:-1] + (self.num_filters,)
    for i, conv in enumerate(self.convs):
      conv.build(shape if i == 0 else tower_shape)
    for level_norms in self.norms.values():
      for norm in level_norms:
        norm.build(tower_shape)
    for output in (self.scores, self.boxes):
      output.build(tower_shape if self.convs else shape)

  def call(self, features, training=None):
    score_outputs, box_outputs = {}, {}
    for level in self.levels:
      x = features[level]
      for conv, norm in zip(self.convs, self.norms[level]):
        x = self.norm_act(norm, conv(x), training)
      score_outputs[level] = self.scores(x)
      box_outputs[level] = self.boxes(x)
    return score_outputs, box_outputs

  def get_config(self):
    return {**super().get_config(), 'min_level': self.min_level,
            'max_level': self.max_level, 'num_anchors': self.num_anchors}


def _build_tower(convs, norms, size, channels, filters):
  """Builds 3x3 convs + norms on [N, size, size, channels] maps."""
  for i, (conv, norm) in enumerate(zip(convs, norms)):
    conv.build((None, size, size, channels if i == 0 else filters))
    norm.build((None, size, size, filters))


def _merge_rois(x):
  """[B, R, S, S, C] -> [B * R, S, S, C]."""
  return ops.reshape(x, (-1,) + tuple(x.shape[2:]))


def _split_rois(x, num_rois):
  """[B * R, ...] -> [B, R, ...]."""
  return ops.reshape(x, (-1, num_rois) + tuple(x.shape[1:]))


@keras.saving.register_keras_serializable(package=PACKAGE)
class FastRCNNHead(_Head):
  """Class logits and class-specific box deltas of RoI features.

  Call on [B, R, S, S, C] returns (class_outputs [B, R, num_classes],
  box_outputs [B, R, num_classes * 4]).
  """

  def __init__(self, num_classes=91, num_convs=4, num_filters=256,
               num_fcs=1, fc_dims=1024, activation='relu', use_sync_bn=False,
               norm_momentum=0.99, norm_epsilon=1e-3, kernel_regularizer=None,
               **kwargs):
    super().__init__(num_convs, num_filters, activation, use_sync_bn,
                     norm_momentum, norm_epsilon, kernel_regularizer, **kwargs)
    self.num_classes = num_classes
    self.num_fcs = num_fcs
    self.fc_dims = fc_dims
    self.convs, self.conv_norms = self._roi_tower()
    fc_init = keras.initializers.VarianceScaling(
        scale=1 / 3, mode='fan_out', distribution='uniform')
    self.fcs = [self._dense(fc_dims, fc_init, f'fc{i}')
                for i in range(num_fcs)]
    self.fc_norms = [self.norm(f'fc_norm{i}') for i in range(num_fcs)]
    normal = keras.initializers.RandomNormal
    self.classifier = self._dense(num_classes, normal(stddev=0.01),
                                  'class_logits')
    self.box_regressor = self._dense(num_classes * 4, normal(stddev=0.001),
                                     'box_deltas')

  def _dense(self, units, initializer, name):
    return keras.layers.Dense(units, kernel_initializer=initializer,
                              kernel_regularizer=self.kernel_regularizer,
                              name=name, dtype=self.dtype_policy)

  def build(self, input_shape):
    num_rois, size, _, channels = input_shape[1:]
    _build_tower(self.convs, self.conv_norms, size, channels,
                 self.num_filters)
    width = size * size * (self.num_filters if self.convs else channels)
    for fc, norm in zip(self.fcs, self.fc_norms):
      fc.build((None, num_rois, width))
      width = self.fc_dims
      norm.build((None, num_rois, width))
    for output in (self.classifier, self.box_regressor):
      output.build((None, num_rois, width))

  def call(self, roi_features, training=None):
    num_rois = roi_features.shape[1]
    x = _merge_rois(roi_features)
    for conv, norm in zip(self.convs, self.conv_norms):
      x = self.norm_act(norm, conv(x), training)
    x = ops.reshape(x, (-1, num_rois, x.shape[1] * x.shape[2] * x.shape[3]))
    for fc, norm in zip(self.fcs, self.fc_norms):
      x = self.norm_act(norm, fc(x), training)
    return self.classifier(x), self.box_regressor(x)

  def get_config(self):
    return {**super().get_config(), 'num_classes': self.num_classes,
            'num_fcs': self.num_fcs, 'fc_dims': self.fc_dims}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskHead(_Head):
  """Per-class mask logits of RoI features, read at each RoI's class.

  Call on (roi_features [B, R, S, S, C], roi_classes [B, R]) returns mask
  logits [B, R, 2S, 2S].
  """

  def __init__(self, num_classes=91, num_convs=4, num_filters=256,
               activation='relu', use_sync_bn=False, norm_momentum=0.99,
               norm_epsilon=1e-3, kernel_regularizer=None, **kwargs):
    super().__init__(num_convs, num_filters, activation, use_sync_bn,
                     norm_momentum, norm_epsilon, kernel_regularizer, **kwargs)
    self.num_classes = num_classes
    self.convs, self.conv_norms = self._roi_tower()
    self.upsample = keras.layers.Conv2DTranspose(
        num_filters, 2, strides=2, kernel_initializer=_he_fan_out(),
        kernel_regularizer=self.kernel_regularizer, name='upsample',
        dtype=self.dtype_policy)
    self.upsample_norm = self.norm('upsample_norm')
    self.mask_logits = self._conv(num_classes, 1, _he_fan_out(),
                                  'mask_logits')

  def build(self, input_shape):
    _, size, _, channels = input_shape[0][1:]
    _build_tower(self.convs, self.conv_norms, size, channels,
                 self.num_filters)
    width = self.num_filters if self.convs else channels
    self.upsample.build((None, size, size, width))
    self.upsample_norm.build((None, 2 * size, 2 * size, self.num_filters))
    self.mask_logits.build((None, 2 * size, 2 * size, self.num_filters))

  def call(self, inputs, training=None):
    roi_features, roi_classes = inputs
    num_rois = roi_features.shape[1]
    x = _merge_rois(roi_features)
    for conv, norm in zip(self.convs, self.conv_norms):
      x = self.norm_act(norm, conv(x), training)
    x = self.norm_act(self.upsample_norm, self.upsample(x), training)
    logits = _split_rois(self.mask_logits(x), num_rois)  # [B, R, H, W, K]
    classes = ops.cast(roi_classes, 'int32')[:, :, None, None, None]
    return ops.take_along_axis(logits, classes, axis=-1)[..., 0]

  def get_config(self):
    return {**super().get_config(), 'num_classes': self.num_classes}
