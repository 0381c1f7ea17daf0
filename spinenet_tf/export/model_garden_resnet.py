"""Model Garden's ResNet and FPN layer numbering, in terms of our layers.

Both are tf_keras functional models (see `model_garden_graph`). ResNet is a
chain (stem conv, stem BN, then the bottleneck blocks level by level), so its
K-th weighted layer is the K-th of ours in order. The FPN's order comes from
its node graph: inputs, lateral 1x1 convs, the top-down sum with nearest
upsampling, the 3x3 output convs, the stride-2 convs to the coarser levels
(the second after an activation) and one BN per level.
"""

from spinenet_tf import specs as specs_lib
from spinenet_tf.export.model_garden_graph import LayerGraph, WeightedLayer
from spinenet_tf.models import resnet


def resnet_layer_order(backbone):
  """Our layer for each `layer_with_weights-K` of Model Garden's ResNet."""
  order = [WeightedLayer('stem', 'conv', 'conv'),
           WeightedLayer('stem', 'norm', 'bn')]
  repeats = resnet.BLOCK_REPEATS[resnet.resolve_model_id(backbone.model_id)]
  for level, count in zip(range(resnet.MIN_LEVEL, resnet.MAX_LEVEL + 1),
                          repeats):
    order += [WeightedLayer(resnet.block_name(level, index), '',
                            specs_lib.BOTTLENECK) for index in range(count)]
  return order


def fpn_layer_order(decoder):
  """Our layer for each `layer_with_weights-K` of Model Garden's FPN."""
  g = LayerGraph()
  inputs = {level: g.add([]) for level in decoder.input_levels}
  top = decoder.backbone_max_level
  lateral = {level: g.conv(inputs[level], decoder.lateral_name(level))
             for level in range(decoder.min_level, top + 1)}
  feats = {top: lateral[top]}
  for level in range(top - 1, decoder.min_level - 1, -1):
    feats[level] = g.add([g.upsample(feats[level + 1]), lateral[level]])
  for level in range(decoder.min_level, top + 1):
    feats[level] = g.conv(feats[level], decoder.output_name(level))
  for level in range(top + 1, decoder.max_level + 1):
    x = feats[level - 1]
    if level > top + 1:
      x = g.add([x])  # activation
    feats[level] = g.conv(x, decoder.coarser_name(level))
  outputs = [g.add([feats[level]], WeightedLayer(decoder.norm_name(level), '',
                                                 'bn'))
             for level in sorted(feats, key=str)]
  return g.weighted_order(outputs)
