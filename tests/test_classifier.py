"""Classifier on a SpineNet backbone."""
import keras
import numpy as np
import pytest

import spinenet_tf


def test_classifier_reads_highest_level_by_default():
  model = spinenet_tf.build_classifier(5, 'mobile-49XS', (128, 128, 3))
  backbone = model.get_layer('spinenet')
  logits = model(np.zeros((2, 128, 128, 3), 'float32'), training=False)
  assert tuple(logits.shape) == (2, 5)
  pooled_from = model.get_layer('pool').input
  assert tuple(pooled_from.shape) == backbone.output_specs['7']
  assert model.count_params() == backbone.count_params() + 24 * 5 + 5


def test_classifier_level_choice_and_errors():
  model = spinenet_tf.build_classifier(3, 'mobile-49XS', (128, 128, 3), level=4)
  assert tuple(model.get_layer('pool').input.shape) == (None, 8, 8, 24)
  with pytest.raises(ValueError, match="level 9 is not an output"):
    spinenet_tf.build_classifier(3, 'mobile-49XS', (128, 128, 3), level=9)
  with pytest.raises(ValueError, match='num_classes must be an integer >= 1'):
    spinenet_tf.build_classifier(0, 'mobile-49XS')
  with pytest.raises(ValueError, match='head must be one of'):
    spinenet_tf.build_classifier(3, 'mobile-49XS', head='mlp')


def test_classifier_on_prebuilt_backbone_fits_its_logits():
  """The model outputs logits (a from_logits loss), trains the backbone it
  was given, and fits 4 images (a loss on probabilities would not)."""
  backbone = spinenet_tf.build_backbone('mobile-49XS', (128, 128, 3))
  model = spinenet_tf.build_classifier(2, backbone, (128, 128, 3))
  assert model.get_layer('spinenet') is backbone
  before = [w.numpy() for w in backbone.trainable_weights]
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=['accuracy'])
  x = np.random.default_rng(0).uniform(0, 1, (4, 128, 128, 3)).astype('float32')
  y = np.array([0, 1, 0, 1])
  history = model.fit(x, y, epochs=10, batch_size=4, verbose=0).history
  assert history['loss'][-1] < 0.5 * history['loss'][0], history['loss']
  assert history['accuracy'][-1] == 1.0
  logits = model(x, training=False).numpy()
  assert (logits.min() < 0 or logits.max() > 1) and not np.allclose(
      logits.sum(axis=1), 1.0)  # not probabilities
  changed = [not np.array_equal(a, w.numpy())
             for a, w in zip(before, backbone.trainable_weights)]
  assert sum(changed) > 0.7 * len(changed)  # all but unused level branches
