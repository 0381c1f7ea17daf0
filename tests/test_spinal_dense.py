"""SpinalDense: wiring against a numpy reference, parameter counts, errors,
serialization."""

import keras
import numpy as np
import pytest

from spinenet_tf.layers import SpinalDense
from spinenet_tf.layers.spinal_dense import split_bounds

# (input width, num_splits, num_layers): even halves as in the paper, a
# remainder, a single split, one feature per split.
CASES = [(6, 2, 4), (7, 3, 5), (5, 1, 2), (4, 4, 3)]


def reference(layer, x, width, num_splits):
  """Spinal FC in numpy from the paper's description and the layer's weights."""
  size = width // num_splits
  parts = [x[:, j * size:(j + 1) * size if j < num_splits - 1 else width]
           for j in range(num_splits)]
  hidden = []
  for i, dense in enumerate(layer.hidden):
    kernel, bias = (w.numpy() for w in dense.weights)
    z = parts[i % num_splits]
    if hidden:
      z = np.concatenate([z, hidden[-1]], axis=1)
    hidden.append(np.maximum(z @ kernel + bias, 0.0))
  kernel, bias = (w.numpy() for w in layer.out.weights)
  return np.concatenate(hidden, axis=1) @ kernel + bias


@pytest.mark.parametrize('width,num_splits,num_layers', CASES)
def test_each_hidden_layer_reads_its_split_and_the_previous_output(
    width, num_splits, num_layers):
  keras.utils.set_random_seed(1)
  layer = SpinalDense(3, layer_width=5, num_layers=num_layers,
                      num_splits=num_splits, dropout_rate=0.0,
                      use_batch_norm=False)
  layer.build((None, width))
  for dense in layer.hidden + [layer.out]:  # non-zero biases matter too
    dense.bias.assign(np.random.uniform(-1, 1, dense.bias.shape))
  x = np.random.uniform(-1, 1, (4, width)).astype(np.float32)
  np.testing.assert_allclose(layer(x), reference(layer, x, width, num_splits),
                             rtol=1e-5, atol=1e-5)


def test_split_bounds_last_split_takes_the_remainder():
  assert split_bounds(6, 2) == [(0, 3), (3, 6)]
  assert split_bounds(7, 3) == [(0, 2), (2, 4), (4, 7)]
  assert split_bounds(3, 3) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize('use_batch_norm', [True, False])
@pytest.mark.parametrize('width,num_splits,num_layers', CASES)
def test_parameter_count_formula(width, num_splits, num_layers,
                                 use_batch_norm):
  units, layer_width = 3, 5
  layer = SpinalDense(units, layer_width=layer_width, num_layers=num_layers,
                      num_splits=num_splits, use_batch_norm=use_batch_norm)
  layer.build((None, width))
  sizes = [b - a for a, b in split_bounds(width, num_splits)]
  dense = sum((sizes[i % num_splits] + (layer_width if i else 0) + 1)
              * layer_width for i in range(num_layers))
  norm = 4 * layer_width * num_layers if use_batch_norm else 0
  out = (num_layers * layer_width + 1) * units
  assert layer.count_params() == dense + norm + out
  trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
  assert trainable == dense + norm // 2 + out


def test_paper_head_on_a_256_wide_feature():
  """SpinalVGG's head: 4 layers of 128 on two halves of 256, 10 classes."""
  layer = SpinalDense(10)
  layer.build((None, 256))
  assert [d.kernel.shape for d in layer.hidden] == (
      [(128, 128)] + [(256, 128)] * 3)
  assert layer.out.kernel.shape == (512, 10)
  assert layer.count_params() == (128 * 128 + 128 + 3 * (256 * 128 + 128)
                                  + 4 * 4 * 128 + 512 * 10 + 10)


def test_output_shape_and_leading_dims():
  layer = SpinalDense(7, layer_width=4, num_layers=2)
  assert layer(np.zeros((2, 3, 10), np.float32)).shape == (2, 3, 7)
  assert layer.compute_output_shape((None, 3, 10)) == (None, 3, 7)


@pytest.mark.parametrize('kwargs,argument', [
    (dict(num_splits=0), 'num_splits'), (dict(num_splits=1.5), 'num_splits'),
    (dict(num_layers=0), 'num_layers'), (dict(layer_width=-1), 'layer_width'),
    (dict(units=0), 'units'), (dict(dropout_rate=1.0), 'dropout_rate')])
def test_bad_arguments_raise(kwargs, argument):
  with pytest.raises(ValueError, match=argument):
    SpinalDense(**{'units': 2, **kwargs})


def test_more_splits_than_features_raises():
  with pytest.raises(ValueError, match='num_splits'):
    SpinalDense(2, num_splits=5).build((None, 4))


def test_serialization_round_trip(tmp_path):
  keras.utils.set_random_seed(2)
  inputs = keras.Input((9,))
  outputs = SpinalDense(4, layer_width=6, num_layers=3, num_splits=3,
                        activation='swish', dropout_rate=0.1)(inputs)
  model = keras.Model(inputs, outputs)
  layer = model.layers[-1]
  config = layer.get_config()
  assert SpinalDense.from_config(config).get_config() == config
  assert keras.saving.get_registered_name(SpinalDense) == (
      'spinenet_tf>SpinalDense')
  path = str(tmp_path / 'spinal.keras')
  model.save(path)
  restored = keras.models.load_model(path)
  x = np.random.uniform(size=(5, 9)).astype(np.float32)
  np.testing.assert_allclose(restored(x), model(x), rtol=1e-6, atol=1e-6)
  assert isinstance(restored.layers[-1], SpinalDense)
