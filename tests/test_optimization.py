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


def test_fused_sgd_runs_the_fused_kernel():
  variable = keras.Variable(np.ones(4, np.float32))
  optimizer = FusedSGD(0.1, momentum=0.9)
  optimizer.build([variable])
  graph = tf.function(lambda g: optimizer.apply([g], [variable])
                      ).get_concrete_function(tf.ones(4)).graph
  ops = {op.type for op in graph.get_operations()}
  assert 'ResourceApplyKerasMomentum' in ops
