"""The RetinaNet head: a class subnet and a box subnet applied to every level.

Each subnet is `num_convs` x (3x3 conv + BatchNorm + activation) and a final
3x3 conv. Convolutions are shared across levels; every level has its own
BatchNorm (as Model Garden's RetinaNetHead with share_level_convs=True, so
the parameter counts agree). Tower convs keep their bias, as there.
"""

import math

import keras

from spinenet_tf.layers.common import PACKAGE
from spinenet_tf.layers.head_base import HeadBase


@keras.saving.register_keras_serializable(package=PACKAGE)
class RetinaNetHead(HeadBase):
  """Class and box predictions for a dict of features {str(level): map}.

  Args:
    min_level, max_level: the levels read from the input dict.
    num_classes: class outputs per anchor (Model Garden counts background
      slot 0 in it, e.g. 91 for COCO).
    num_anchors: anchors per location.
    num_convs, num_filters: depth and width of each subnet.
    prior_probability: initial foreground probability of the class logits.

  Call returns (class_outputs, box_outputs), dicts by level of
  [B, H, W, num_anchors * num_classes] and [B, H, W, num_anchors * 4].
  """

  def __init__(self, min_level=3, max_level=7, num_classes=91, num_anchors=9,
               num_convs=4, num_filters=256, activation='relu',
               use_sync_bn=False, norm_momentum=0.99, norm_epsilon=1e-3,
               kernel_regularizer=None, prior_probability=0.01, **kwargs):
    super().__init__(num_convs, num_filters, activation, use_sync_bn,
                     norm_momentum, norm_epsilon, kernel_regularizer, **kwargs)
    self.min_level = min_level
    self.max_level = max_level
    self.num_classes = num_classes
    self.num_anchors = num_anchors
    self.prior_probability = prior_probability
    self.levels = [str(level) for level in range(min_level, max_level + 1)]
    bias = -math.log((1 - prior_probability) / prior_probability)
    self.class_convs, self.class_norms, self.class_logits = self._subnet(
        'class', num_anchors * num_classes, bias)
    self.box_convs, self.box_norms, self.box_deltas = self._subnet(
        'box', num_anchors * 4, 0.0)

  def _conv(self, filters, stddev, bias, name):
    return keras.layers.Conv2D(
        filters, 3, padding='same',
        kernel_initializer=keras.initializers.RandomNormal(stddev=stddev),
        bias_initializer=keras.initializers.Constant(bias),
        kernel_regularizer=self.kernel_regularizer, name=name,
        dtype=self.dtype_policy)

  def _subnet(self, prefix, outputs, output_bias):
    convs = [self._conv(self.num_filters, 0.01, 0.0, f'{prefix}_conv{i}')
             for i in range(self.num_convs)]
    norms = {level: [self.norm(f'{prefix}_norm{i}_level{level}')
                     for i in range(self.num_convs)]
             for level in self.levels}
    return convs, norms, self._conv(outputs, 1e-5, output_bias,
                                    f'{prefix}_output')

  def build(self, input_shape):
    shape = self.level_shape(input_shape)
    tower_shape = shape[:-1] + (self.num_filters,)
    for convs, norms, output in ((self.class_convs, self.class_norms,
                                  self.class_logits),
                                 (self.box_convs, self.box_norms,
                                  self.box_deltas)):
      for i, conv in enumerate(convs):
        conv.build(shape if i == 0 else tower_shape)
      for level_norms in norms.values():
        for norm in level_norms:
          norm.build(tower_shape)
      output.build(tower_shape if convs else shape)

  def _tower(self, x, convs, norms, training):
    for conv, norm in zip(convs, norms):
      x = self.norm_act(norm, conv(x), training)
    return x

  def call(self, features, training=None):
    class_outputs, box_outputs = {}, {}
    for level in self.levels:
      x = features[level]
      class_outputs[level] = self.class_logits(self._tower(
          x, self.class_convs, self.class_norms[level], training))
      box_outputs[level] = self.box_deltas(self._tower(
          x, self.box_convs, self.box_norms[level], training))
    return class_outputs, box_outputs

  def get_config(self):
    return {**super().get_config(), 'min_level': self.min_level,
            'max_level': self.max_level, 'num_classes': self.num_classes,
            'num_anchors': self.num_anchors,
            'prior_probability': self.prior_probability}
