"""TFDS pipelines for 28x28 grey images: MNIST, EMNIST, KMNIST, Fashion-MNIST
and QuickDraw bitmaps.

Images come out float32 [batch, 28, 28, 1] in [0, 1], labels int32 [batch].
EMNIST images are transposed to upright (TFDS stores them as in the original
files). A class subset keeps only those classes and renumbers them 0..n-1 in
the order given, as in SpinalNet's 24-class QuickDraw study.
"""

import numbers

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from spinenet_tf.data import tfds_names

DATASETS = ('mnist', 'emnist', 'kmnist', 'fashion_mnist', 'quickdraw_bitmap')
# quickdraw_bitmap has only a 'train' split: hold out its last 10%.
_SPLITS = {'quickdraw_bitmap': ('train[:90%]', 'train[90%:]')}


def _family(name):
  return tfds_names.base_name(name, DATASETS, 'emnist/letters')


def default_splits(name):
  """(train split, test split) of a dataset."""
  return _SPLITS.get(_family(name), ('train', 'test'))


def _class_ids(all_names, classes):
  ids = [all_names.index(c) if c in all_names else c for c in classes]
  if not ids or len(set(ids)) != len(ids) or not all(
      isinstance(i, numbers.Integral) and 0 <= i < len(all_names)
      for i in ids):
    raise ValueError(f'classes must be distinct class ids in [0, '
                     f'{len(all_names)}) or class names, got {classes!r}.')
  return [int(i) for i in ids]


def class_names(name, classes=None, data_dir=None):
  """Names of the classes in label order (of the subset when `classes`)."""
  _family(name)
  names = tfds.builder(name, data_dir=data_dir).info.features['label'].names
  if classes is None:
    return names
  return [names[i] for i in _class_ids(names, classes)]


def load(name, split, batch_size=128, classes=None, shuffle=None,
         shuffle_buffer=10_000, seed=None, drop_remainder=False,
         data_dir=None):
  """Batched (images, labels) tf.data.Dataset of a TFDS dataset.

  Args:
    name: a TFDS name of the family, optionally with config ('emnist/letters').
    split: TFDS split, e.g. 'train', 'test[:10%]'.
    classes: optional class ids or names to keep, relabelled 0..n-1.
    shuffle: shuffle files and examples; default for splits starting 'train'.
    seed: shuffle seed.
    data_dir: TFDS data directory.
  """
  family = _family(name)
  if shuffle is None:
    shuffle = split.startswith('train')
  ds = tfds.load(name, split=split, data_dir=data_dir, as_supervised=True,
                 shuffle_files=shuffle,
                 read_config=tfds.ReadConfig(shuffle_seed=seed))
  if classes is not None:
    all_names = class_names(name, data_dir=data_dir)
    new_label = np.full(len(all_names), -1, np.int64)
    new_label[_class_ids(all_names, classes)] = np.arange(len(classes))
    new_label = tf.constant(new_label)
    ds = ds.map(lambda image, label: (image, tf.gather(new_label, label)))
    ds = ds.filter(lambda image, label: label >= 0)

  def prepare(image, label):
    if family == 'emnist':
      image = tf.transpose(image, [1, 0, 2])
    return tf.cast(image, tf.float32) / 255.0, tf.cast(label, tf.int32)

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed)
  return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(
      tf.data.AUTOTUNE)
