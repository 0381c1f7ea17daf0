"""SpinalVGG / VGG, the classifier's spinal head, head swapping, and a
real-data check on the scikit-learn digits."""

import keras
import numpy as np
import pytest

from spinenet_tf.data import sklearn_digits
from spinenet_tf.layers import SpinalDense
from spinenet_tf.models.classifier import build_classifier
from spinenet_tf.models.spinal_head import with_spinal_head
from spinenet_tf.models.spinal_vgg import build_spinal_vgg

TINY = 1 / 16  # VGG widths 4/8/16/16, spinal width 8, dense width 32


@pytest.mark.parametrize('head', ['spinal', 'dense'])
def test_vgg_maps_28x28_grey_images_to_logits(head):
  model = build_spinal_vgg(7, head=head, width_multiplier=TINY)
  assert model.name == {'spinal': 'spinal_vgg', 'dense': 'vgg'}[head]
  assert model.get_layer('flatten').output.shape == (None, 16)
  assert model(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 7)


def test_spinal_vgg_head_is_the_paper_head():
  head = build_spinal_vgg(10).get_layer('spinal_head')
  assert isinstance(head, SpinalDense)
  assert (head.layer_width, head.num_layers, head.num_splits) == (128, 4, 2)
  assert head.hidden[0].kernel.shape == (128, 128)


def test_full_size_parameter_counts():
  spinal, plain = build_spinal_vgg(10), build_spinal_vgg(10, head='dense')
  convs = spinal.count_params() - spinal.get_layer('spinal_head').count_params()
  assert plain.count_params() - convs == 138_762  # 256-512-10 + BN(512)
  assert spinal.count_params() - convs == 122_378


def test_vgg_rejects_bad_head_and_small_images():
  with pytest.raises(ValueError, match='head'):
    build_spinal_vgg(head='mlp')
  with pytest.raises(ValueError, match='input_shape'):
    build_spinal_vgg(input_shape=(8, 8, 1))


def tiny_backbone():
  """Stands in for SpineNet: a model returning a dict of feature levels."""
  inputs = keras.Input((32, 32, 3))
  p3 = keras.layers.Conv2D(6, 3, strides=8, padding='same')(inputs)
  p4 = keras.layers.Conv2D(10, 3, strides=2, padding='same')(p3)
  return keras.Model(inputs, {'3': p3, '4': p4})


def test_classifier_spinal_head():
  model = build_classifier(5, backbone=tiny_backbone(), input_shape=(32, 32, 3),
                           head='spinal', spinal_layer_width=4,
                           spinal_num_layers=3, dropout_rate=0.2)
  head = model.get_layer('spinal_head')
  assert (head.units, head.layer_width, head.num_layers, head.num_splits,
          head.dropout_rate) == (5, 4, 3, 2, 0.2)
  assert head.input.shape == (None, 10)  # pooled highest level
  assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 5)


def test_classifier_dense_head_unchanged():
  model = build_classifier(5, backbone=tiny_backbone(), input_shape=(32, 32, 3))
  assert model.get_layer('logits').units == 5
  with pytest.raises(ValueError, match="'dense', 'spinal'"):
    build_classifier(5, backbone=tiny_backbone(), head='mlp')


def small_classifier():
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Conv2D(4, 3, name='conv')(inputs)
  x = keras.layers.GlobalAveragePooling2D(name='gap')(x)
  x = keras.layers.Dense(12, activation='relu', name='features')(x)
  outputs = keras.layers.Dense(5, activation='softmax', name='logits')(x)
  return keras.Model(inputs, outputs, name='small')


@pytest.mark.parametrize('feature_layer,width', [
    (None, 12), ('gap', 4), ('conv', 4)])
def test_with_spinal_head_reads_the_features(feature_layer, width):
  model = small_classifier()
  swapped = with_spinal_head(model, feature_layer=feature_layer, layer_width=3)
  head = swapped.get_layer('spinal_head')
  assert swapped.name == 'small_spinal'
  assert head.input.shape == (None, width) and head.units == 5
  assert swapped.get_layer('conv') is model.get_layer('conv')
  assert 'logits' not in [layer.name for layer in swapped.layers]
  assert swapped(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 5)


def test_with_spinal_head_freezes_the_base_and_sets_classes():
  model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8),
                            keras.layers.Dense(3)])
  swapped = with_spinal_head(model, num_classes=4, freeze_base=True,
                             layer_width=2, num_layers=2)
  head = swapped.get_layer('spinal_head')
  assert head.units == 4
  assert {id(w) for w in swapped.trainable_weights} == {
      id(w) for w in head.trainable_weights}


def test_with_spinal_head_errors():
  inputs = keras.Input((4, 4, 1))
  no_dense = keras.Model(inputs, keras.layers.Flatten()(inputs))
  with pytest.raises(ValueError, match='feature_layer'):
    with_spinal_head(no_dense)

  class Subclassed(keras.Model):

    def call(self, x):
      return x

  with pytest.raises(ValueError, match='functional or Sequential'):
    with_spinal_head(Subclassed())


def test_plain_and_spinal_heads_learn_sklearn_digits():
  """Real data: 1347 train / 450 held-out 8x8 digits, same seed and budget.

  Measured at seed 0: 0.973 (dense head) and 0.973 (spinal head).
  """
  (x_train, y_train), (x_test, y_test) = sklearn_digits.load(test_size=0.25)

  def mlp():
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(64, activation='relu', name='features'),
        keras.layers.Dense(10, name='logits')])

  accuracies = {}
  for head in ('dense', 'spinal'):
    keras.utils.set_random_seed(0)
    model = mlp()
    if head == 'spinal':
      model = with_spinal_head(model, layer_width=16, dropout_rate=0.0)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    model.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
    accuracies[head] = model.evaluate(x_test, y_test, verbose=0,
                                      return_dict=True)['accuracy']
  assert min(accuracies.values()) >= 0.90, accuracies
