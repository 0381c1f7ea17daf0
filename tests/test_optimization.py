"""The fused SGD update equals Keras SGD's."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.training.optimization import FusedSGD


def _train(optimizer_class, steps=5, **options):
  rng = np.random.default_rng(0)
  variables = [keras.Variable(rng.normal(size=shape).astype('float32'))
               for shape in ((3, 3, 8, 16), (16,))]
  optimizer = optimizer_class(
      keras.optimizers.schedules.CosineDecay(0.1, 10), **options)
  optimizer.build(variables)
  step = tf.function(lambda grads: optimizer.apply(grads, variables))
  for _ in range(steps):
    step([tf.constant(rng.normal(size=v.shape).astype('float32'))
          for v in variables])
  return [v.numpy() for v in (*variables, *optimizer.momentums)]


@pytest.mark.parametrize('options', [
    dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
    dict(momentum=0.0), dict(momentum=0.5, weight_decay=0.01)])
def test_fused_sgd_equals_keras_sgd(options):
  fused, keras_sgd = _train(FusedSGD, **options), _train(keras.optimizers.SGD,
                                                         **options)
  assert len(fused) == len(keras_sgd)
  for a, b in zip(fused, keras_sgd):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_fused_sgd_runs_the_fused_kernel_and_reads_the_rate_once():
  variables = [keras.Variable(np.ones(4, np.float32)) for _ in range(5)]
  optimizer = FusedSGD(0.1, momentum=0.9)  # a constant rate: a variable
  optimizer.build(variables)
  graph = tf.function(lambda g: optimizer.apply([g] * 5, variables)
                      ).get_concrete_function(tf.ones(4)).graph
  operations = graph.get_operations()
  assert [op.type for op in operations].count(
      'ResourceApplyKerasMomentum') == 5
  rate = optimizer._learning_rate.value.handle  # pylint: disable=protected-access
  (inside,) = [internal.name for external, internal in graph.captures
               if external is rate]
  reads = [op for op in operations if op.type == 'ReadVariableOp' and
           op.inputs[0].name == inside]
  assert len(reads) == 1  # Keras reads it once per variable
