"""The handwritten digits bundled with scikit-learn: 1797 8x8 images, offline.

Small real data for tests and quick comparisons (scikit-learn: the
`digits` extra). Images come out float32
[N, size, size, 1] in [0, 1] (the raw 0..16 values over 16), labels int32.
"""

import numpy as np
import tensorflow as tf

try:
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
except ImportError as e:  # an optional extra, not a core dependency
  raise ImportError('spinenet_tf.data.sklearn_digits needs scikit-learn: '
                    'pip install "spinenet_tf[digits]"') from e

NUM_CLASSES = 10


def _resize(images, image_size, method):
  if method == 'pad':
    return tf.image.resize_with_crop_or_pad(images, image_size, image_size)
  return tf.image.resize(images, (image_size, image_size), method=method)


def load(test_size=0.25, seed=0, image_size=None, method='bilinear',
         batch_size=None):
  """Deterministic stratified train/test split of the digits.

  Args:
    test_size: held-out fraction.
    seed: seed of the split (and of the training shuffle).
    image_size: None keeps 8x8; an int gives image_size x image_size images.
    method: 'pad' (zero border, digit centred) or a tf.image.resize method.
    batch_size: None returns numpy arrays; an int returns tf.data datasets
      (the training one shuffled).

  Returns:
    ((x_train, y_train), (x_test, y_test)), or (train_ds, test_ds).
  """
  digits = load_digits()
  images = (digits.images[..., None] / 16.0).astype(np.float32)
  if image_size is not None:
    images = _resize(images, image_size, method).numpy()
  labels = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = train_test_split(
      images, labels, test_size=test_size, random_state=seed, stratify=labels)
  if batch_size is None:
    return (x_train, y_train), (x_test, y_test)
  train = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(
      len(x_train), seed=seed).batch(batch_size)
  test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(batch_size)
  return train, test
