"""FLOPs of a model's inference graph, counted by the TF profiler.

    by_type = count_flops(model, (640, 640, 3))  # {'Conv2D': ..., ...}
    total = sum(by_type.values())               # 1 multiply-add = 2 FLOPs

The graph is the frozen `model(x, training=False)` on a [1, H, W, C]
input, so weights are constants and only the ops of one image count.
"""

import tensorflow as tf

from spinenet_tf import compat


def count_flops(model, input_shape):
  """{op type: FLOPs} of one inference on a [1, *input_shape] input."""
  concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
      tf.TensorSpec([1, *input_shape], tf.float32))
  graph = compat.frozen_graph(concrete)
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  root = tf.compat.v1.profiler.profile(graph=graph, cmd='op', options=options)
  by_type, node = {}, root
  while node.children:  # the op view nests one op type per level
    node = node.children[0]
    by_type[node.name] = int(node.float_ops)
  if sum(by_type.values()) != root.total_float_ops:
    raise RuntimeError('the profiler op view does not add up to its total.')
  return by_type
