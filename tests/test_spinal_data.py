"""MNIST-family TFDS pipelines (on tfds mock data, no download) and the
scikit-learn digits loader."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from spinenet_tf.data import mnist_family, sklearn_digits


def raw_train(name):
  """(images uint8, labels) of the unshuffled mocked train split."""
  ds = tfds.load(name, split='train', as_supervised=True)
  images, labels = zip(*ds.as_numpy_iterator())
  return np.stack(images), np.array(labels)


def unbatch(ds):
  images, labels = zip(*ds.as_numpy_iterator())
  return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize('name', mnist_family.DATASETS)
def test_pipeline_gives_normalized_28x28_batches(name):
  with tfds.testing.mock_data(num_examples=10):
    ds = mnist_family.load(name, 'train', batch_size=4, seed=0)
    num_classes = len(mnist_family.class_names(name))
    assert ds.element_spec[0].shape.as_list() == [None, 28, 28, 1]
    images, labels = unbatch(ds)
  assert images.shape == (10, 28, 28, 1) and images.dtype == np.float32
  assert 0.0 <= images.min() and images.max() <= 1.0
  assert labels.dtype == np.int32 and labels.max() < num_classes


def test_test_split_is_not_shuffled_and_values_are_scaled():
  with tfds.testing.mock_data(num_examples=12):
    raw_images, raw_labels = raw_train('fashion_mnist')
    images, labels = unbatch(mnist_family.load('fashion_mnist', 'train',
                                               batch_size=5, shuffle=False))
  np.testing.assert_array_equal(labels, raw_labels)
  np.testing.assert_allclose(images, raw_images / 255.0, rtol=1e-6)


def test_emnist_is_transposed_upright():
  with tfds.testing.mock_data(num_examples=3):
    raw_images, _ = raw_train('emnist/letters')
    images, _ = unbatch(mnist_family.load('emnist/letters', 'train',
                                          shuffle=False))
  np.testing.assert_allclose(images * 255.0,
                             np.transpose(raw_images, (0, 2, 1, 3)), atol=1e-4)


def test_class_subset_filters_and_relabels_in_given_order():
  with tfds.testing.mock_data(num_examples=40):
    _, raw = raw_train('mnist')
    _, labels = unbatch(mnist_family.load('mnist', 'train', classes=[7, 3],
                                          shuffle=False, batch_size=8))
  expected = [{7: 0, 3: 1}[label] for label in raw if label in (7, 3)]
  assert len(expected) > 0
  np.testing.assert_array_equal(labels, expected)


def test_quickdraw_class_subset_by_name():
  with tfds.testing.mock_data(num_examples=30):
    names = mnist_family.class_names('quickdraw_bitmap')
    _, raw = raw_train('quickdraw_bitmap')
    chosen = [names[raw[1]], names[raw[0]]]
    assert mnist_family.class_names('quickdraw_bitmap', chosen) == chosen
    _, labels = unbatch(mnist_family.load('quickdraw_bitmap', 'train',
                                          classes=chosen, shuffle=False))
  expected = [{raw[1]: 0, raw[0]: 1}[label] for label in raw
              if label in (raw[0], raw[1])]
  np.testing.assert_array_equal(labels, expected)
  assert len(names) == 345


def test_train_split_is_shuffled_repeatably_with_a_seed():
  with tfds.testing.mock_data(num_examples=20):
    _, raw = raw_train('kmnist')
    first = unbatch(mnist_family.load('kmnist', 'train', seed=3))[1]
    second = unbatch(mnist_family.load('kmnist', 'train', seed=3))[1]
  np.testing.assert_array_equal(first, second)
  assert sorted(first) == sorted(raw) and list(first) != list(raw)


def test_default_splits_and_errors():
  assert mnist_family.default_splits('emnist/digits') == ('train', 'test')
  assert mnist_family.default_splits('quickdraw_bitmap')[1] == 'train[90%:]'
  with pytest.raises(ValueError, match='name must be one of'):
    mnist_family.load('cifar10', 'train')
  with tfds.testing.mock_data(num_examples=2):
    with pytest.raises(ValueError, match='classes'):
      mnist_family.load('mnist', 'train', classes=[10])
    with pytest.raises(ValueError, match='classes'):
      mnist_family.load('mnist', 'train', classes=[1, 1])
    with pytest.raises(ValueError, match='classes'):
      mnist_family.load('mnist', 'train', classes=['cat'])


def test_digits_split_is_stratified_and_deterministic():
  (x_train, y_train), (x_test, y_test) = sklearn_digits.load(test_size=0.25)
  assert x_train.shape == (1347, 8, 8, 1) and x_test.shape == (450, 8, 8, 1)
  assert x_train.dtype == np.float32 and y_train.dtype == np.int32
  assert x_train.min() == 0.0 and x_train.max() == 1.0
  test_share = np.bincount(y_test) / np.bincount(np.concatenate([y_train,
                                                                 y_test]))
  assert np.all(np.abs(test_share - 0.25) < 0.02)
  (x_again, _), _ = sklearn_digits.load(test_size=0.25)
  np.testing.assert_array_equal(x_again, x_train)


def test_digits_resize_pad_and_datasets():
  (small, _), _ = sklearn_digits.load()
  (padded, _), _ = sklearn_digits.load(image_size=16, method='pad')
  np.testing.assert_array_equal(padded[:, 4:12, 4:12], small)
  assert padded[:, :4].max() == 0.0
  (resized, _), _ = sklearn_digits.load(image_size=28)
  assert resized.shape == (1347, 28, 28, 1)
  train, test = sklearn_digits.load(image_size=28, batch_size=100)
  assert train.element_spec[0].shape.as_list() == [None, 28, 28, 1]
  assert sum(int(tf.shape(y)[0]) for _, y in test) == 450
