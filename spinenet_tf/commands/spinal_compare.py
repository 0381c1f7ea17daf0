"""Trains the plain VGG and SpinalVGG with the same seed and budget, side
by side.

  spinenet-spinal-compare                      # sklearn digits, offline
  spinenet-spinal-compare --dataset=fashion_mnist --epochs=5
  spinenet-spinal-compare --dataset=quickdraw_bitmap \
      --classes=cat,dog,apple --train_split='train[:1%]'

The scikit-learn digits (8x8) are resized to 28x28 for the VGG input; the
default budget (20 epochs, batch 32, VGG at 1/4 width) takes about a minute on
2 CPU cores. Prints parameter counts (whole model and head), held-out accuracy
and training time.
"""

import time

import keras
from absl import flags

from spinenet_tf import cli

from spinenet_tf.data import mnist_family, sklearn_digits
from spinenet_tf.models.spinal_vgg import build_spinal_vgg

DIGITS = 'sklearn_digits'
FLAGS = flags.FLAGS
flags.DEFINE_string(
    'dataset', DIGITS, f'{DIGITS} or a TFDS name of {mnist_family.DATASETS}, '
    'optionally with a config (emnist/letters).')
flags.DEFINE_integer('epochs', 20, 'Training epochs of each model.')
flags.DEFINE_integer('seed', 0, 'Seed of weights, shuffling and the split.')
flags.DEFINE_integer('batch_size', 32, 'Batch size.')
flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate.')
flags.DEFINE_float('width_multiplier', 0.25,
                   'Scales all VGG widths; 1.0 is the paper\'s size.')
flags.DEFINE_list('classes', None, 'Class subset (ids or names) of a TFDS set.')
flags.DEFINE_string('train_split', None, 'TFDS train split (default per set).')
flags.DEFINE_string('test_split', None, 'TFDS test split (default per set).')
flags.DEFINE_string('data_dir', None, 'TFDS data directory.')


def load_data():
  """(train_ds, test_ds, num_classes) for the chosen dataset."""
  if FLAGS.dataset == DIGITS:
    train, test = sklearn_digits.load(seed=FLAGS.seed, image_size=28,
                                      batch_size=FLAGS.batch_size)
    return train, test, sklearn_digits.NUM_CLASSES
  name = FLAGS.dataset
  classes = [int(c) if c.isdigit() else c for c in FLAGS.classes or []] or None
  train_split, test_split = mnist_family.default_splits(name)
  common = dict(batch_size=FLAGS.batch_size, classes=classes,
                data_dir=FLAGS.data_dir)
  train = mnist_family.load(name, FLAGS.train_split or train_split,
                            seed=FLAGS.seed, **common)
  test = mnist_family.load(name, FLAGS.test_split or test_split,
                           shuffle=False, **common)
  return train, test, len(mnist_family.class_names(
      name, classes, data_dir=FLAGS.data_dir))


def train_and_evaluate(head):
  """Row of the table for one head, built and trained from the same seed."""
  keras.utils.set_random_seed(FLAGS.seed)
  train, test, num_classes = load_data()
  model = build_spinal_vgg(num_classes, head=head,
                           width_multiplier=FLAGS.width_multiplier)
  model.compile(keras.optimizers.Adam(FLAGS.learning_rate),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=['accuracy'])
  start = time.perf_counter()
  model.fit(train, epochs=FLAGS.epochs, shuffle=False, verbose=0)
  seconds = time.perf_counter() - start
  accuracy = model.evaluate(test, verbose=0, return_dict=True)['accuracy']
  head_layers = model.layers[model.layers.index(model.get_layer('flatten')):]
  head_params = sum(layer.count_params() for layer in head_layers)
  return model.name, model.count_params(), head_params, accuracy, seconds


def main(argv):
  cli.refuse_arguments(argv)
  rows = [train_and_evaluate(head) for head in ('dense', 'spinal')]
  print(f'dataset={FLAGS.dataset} '
        f'epochs={FLAGS.epochs} seed={FLAGS.seed} '
        f'batch_size={FLAGS.batch_size} lr={FLAGS.learning_rate} '
        f'width_multiplier={FLAGS.width_multiplier}')
  print(f'| {"model":<10} | {"params":>9} | {"head params":>11} | '
        f'{"test acc":>8} | {"train s":>7} |')
  print(f'|{"-" * 12}|{"-" * 10}:|{"-" * 12}:|{"-" * 9}:|{"-" * 8}:|')
  for name, params, head_params, accuracy, seconds in rows:
    print(f'| {name:<10} | {params:>9,} | {head_params:>11,} | '
          f'{accuracy:>8.4f} | {seconds:>7.1f} |')


def run():
  cli.run(main, doc=__doc__)
