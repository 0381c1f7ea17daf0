"""How a tf_keras functional model numbers its layers in a TF2 checkpoint.

Model Garden's backbones and decoders are tf_keras functional models; their
checkpoint keys are `<prefix>layer_with_weights-K/...`, K counting only the
layers with weights in the model's layer list. That list is sorted by depth
from the outputs (longest path), ties broken by the first visit of a
depth-first walk from the outputs (in sorted key order), over every node of
the graph, the weightless TF ops included. `LayerGraph` rebuilds such a node
graph and sorts it by the same rule.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class WeightedLayer:
  """A reference layer with weights: our layer name, unit path and kind."""
  layer: str
  unit: str      # attribute path inside our layer ('' for the layer itself)
  kind: str      # 'conv' (kernel, and bias if ours has one), 'bn' or a block type


class LayerGraph:
  """The reference's node graph: inputs per node, weighted nodes marked."""

  def __init__(self):
    self.inputs = []
    self.weighted = {}

  def add(self, inputs, weighted=None):
    """A node reading `inputs` (node ids, in call order); returns its id."""
    self.inputs.append(list(inputs))
    node = len(self.inputs) - 1
    if weighted is not None:
      self.weighted[node] = weighted
    return node

  def conv(self, x, layer, unit=''):
    return self.add([x], WeightedLayer(layer, unit, 'conv'))

  def conv_bn(self, x, layer, unit=''):
    """A conv then a BN, our `unit.conv` and `unit.norm` of `layer`."""
    x = self.conv(x, layer, unit + '.conv' if unit else 'conv')
    return self.add([x], WeightedLayer(layer, unit + '.norm' if unit else 'norm',
                                       'bn'))

  def upsample(self, x):
    """Nearest upsampling as the reference writes it: shape, slices,
    reshape, tile, multiplies, reshape."""
    shape = self.add([x])
    height, width = self.add([shape]), self.add([shape])
    tiled = self.add([self.add([x, height, width])])
    return self.add([tiled, self.add([height]), self.add([width])])

  def weighted_order(self, outputs):
    """Weighted nodes sorted as a tf_keras functional model lists layers."""
    first_visit, finished, post_order = {}, set(), []
    for output in outputs:
      stack = [(output, False)]
      while stack:
        node, expanded = stack.pop()
        if expanded:
          if node not in finished:
            finished.add(node)
            post_order.append(node)
          continue
        if node in finished:
          continue
        first_visit.setdefault(node, len(first_visit))
        stack.append((node, True))
        stack.extend((p, False) for p in reversed(self.inputs[node]))
    depth = {}
    for node in reversed(post_order):
      d = depth.setdefault(node, 0)
      for parent in self.inputs[node]:
        depth[parent] = max(depth.get(parent, 0), d + 1)
    ordered = sorted(post_order, key=lambda n: (-depth[n], first_visit[n]))
    return [self.weighted[n] for n in ordered if n in self.weighted]
