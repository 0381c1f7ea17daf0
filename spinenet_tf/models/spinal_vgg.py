"""SpinalVGG and its plain VGG baseline for small grey images (MNIST family).

Four VGG stages of 3x3 conv + BN + ReLU, (64, 64) (128, 128) (256, 256, 256)
(256, 256, 256), each followed by a 2x2 max-pool (28x28 -> 1x1x256), then
flatten and a head:
  'spinal': SpinalDense, 4 hidden layers of width 128 on the two halves of the
    256-wide feature (~122K parameters);
  'dense': the authors' plain VGG head, dropout + dense 512 + BN + ReLU,
    dropout + dense to the classes (~139K parameters).
Dropout is 0.5 before every dense in both heads. `width_multiplier` scales
every conv and FC width (tests use tiny versions).
"""

import keras

from spinenet_tf.layers.common import ConvNormAct
from spinenet_tf.layers.spinal_dense import SpinalDense

STAGES = ((64, 64), (128, 128), (256, 256, 256), (256, 256, 256))
HEADS = ('spinal', 'dense')
SPINAL_WIDTH, SPINAL_LAYERS, DENSE_WIDTH = 128, 4, 512


def _scaled(width, multiplier):
  return max(1, int(round(width * multiplier)))


def _dense_head(x, num_classes, width, dropout_rate):
  x = keras.layers.Dropout(dropout_rate, name='fc_dropout')(x)
  x = keras.layers.Dense(width, name='fc')(x)
  x = keras.layers.BatchNormalization(name='fc_norm')(x)
  x = keras.layers.ReLU(name='fc_relu')(x)
  x = keras.layers.Dropout(dropout_rate, name='logits_dropout')(x)
  return keras.layers.Dense(num_classes, name='logits')(x)


def build_spinal_vgg(num_classes=10, input_shape=(28, 28, 1), head='spinal',
                     width_multiplier=1.0, dropout_rate=0.5, name=None):
  """Builds SpinalVGG (head='spinal') or the plain VGG baseline (head='dense').

  Args:
    num_classes: number of output logits.
    input_shape: (height, width, channels); at least 16x16 (four 2x2 pools).
    head: 'spinal' or 'dense'.
    width_multiplier: scales all conv and FC widths.
    dropout_rate: dropout before every dense layer of the head.
    name: model name; default 'spinal_vgg' or 'vgg'.

  Returns:
    A keras.Model mapping images to logits [batch, num_classes].
  """
  if head not in HEADS:
    raise ValueError(f'head must be one of {list(HEADS)}, got {head!r}.')
  if min(input_shape[:2]) < 16:
    raise ValueError(f'input_shape must be at least 16x16, got {input_shape!r}.')
  inputs = keras.Input(shape=tuple(input_shape), name='image')
  x = inputs
  for s, stage in enumerate(STAGES):
    for c, filters in enumerate(stage):
      x = ConvNormAct(_scaled(filters, width_multiplier), 3, activation='relu',
                      name=f'stage{s + 1}_conv{c + 1}')(x)
    x = keras.layers.MaxPooling2D(2, name=f'stage{s + 1}_pool')(x)
  x = keras.layers.Flatten(name='flatten')(x)
  if head == 'spinal':
    logits = SpinalDense(
        num_classes, layer_width=_scaled(SPINAL_WIDTH, width_multiplier),
        num_layers=SPINAL_LAYERS, num_splits=2, dropout_rate=dropout_rate,
        name='spinal_head')(x)
  else:
    logits = _dense_head(x, num_classes,
                         _scaled(DENSE_WIDTH, width_multiplier), dropout_rate)
  default_name = 'spinal_vgg' if head == 'spinal' else 'vgg'
  return keras.Model(inputs, logits, name=name or default_name)
