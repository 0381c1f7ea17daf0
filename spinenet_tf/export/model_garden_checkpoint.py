"""Load a Model Garden (tf-models-official) TF2 checkpoint into our model.

Backbones (SpineNet, SpineNet-Mobile, ResNet) and the FPN decoder are
tf_keras functional models in Model Garden: their keys are
`<prefix>layer_with_weights-K/...`, and `model_garden_graph` rebuilds which
of our layers each K is (for SpineNet from our `NetworkPlan`, below; for
ResNet and FPN in `model_garden_resnet`). The RetinaNet head and Mask
R-CNN's heads are plain layers, keyed by attribute (`_head/_cls_convs/0/
kernel`, `rpn_head/_norms/0/0/gamma`). A classifier is a
functional model: backbone, [BN], pooling, dropout, dense.

`convert_checkpoint(path, model)` takes our backbone, our `RetinaNet`, our
`MaskRCNN` or a `build_classifier` model and the checkpoint of the same
Model Garden model (a backbone can also come out of a RetinaNet or
classifier checkpoint, e.g. an ImageNet ResNet-50). The SpineNet reference must have been built with a
fixed input size, as Model Garden's configs do (with an unknown size it
silently drops the output merges).
"""

import os
import re

import numpy as np

from spinenet_tf import specs as specs_lib
from spinenet_tf.export.model_garden_graph import LayerGraph, WeightedLayer
from spinenet_tf.export import model_garden_resnet
from spinenet_tf.models import resnet
from spinenet_tf.models.backbone import SpineNet, block_name, resample_name
from spinenet_tf.models.maskrcnn import MaskRCNN
from spinenet_tf.models.retinanet import RetinaNet

_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
_MODEL_IDS = specs_lib.MODEL_IDS + tuple(
    f'resnet{depth}' for depth in resnet.BLOCK_REPEATS)
# Greedy: the innermost functional model holding the layer.
_LAYER_RE = re.compile(r'^(.*)layer_with_weights-(\d+)/[^/]')

# Reference sublayer / variable names -> our attribute paths, per layer kind.
_BN_VARS = ('gamma', 'beta', 'moving_mean', 'moving_variance')
_BLOCK_UNITS = {
    specs_lib.BOTTLENECK: {'_shortcut': 'shortcut.conv', '_norm0': 'shortcut.norm',
                           '_conv1': 'conv1.conv', '_norm1': 'conv1.norm',
                           '_conv2': 'conv2.conv', '_norm2': 'conv2.norm',
                           '_conv3': 'conv3.conv', '_norm3': 'conv3.norm'},
    specs_lib.RESIDUAL: {'_shortcut': 'shortcut.conv', '_norm0': 'shortcut.norm',
                         '_conv1': 'conv1.conv', '_norm1': 'conv1.norm',
                         '_conv2': 'conv2.conv', '_norm2': 'conv2.norm'},
    specs_lib.MBCONV: {'_conv0': 'expand.conv', '_norm0': 'expand.norm',
                       '_conv1': 'depthwise.conv', '_norm1': 'depthwise.norm',
                       '_squeeze_excitation/_se_reduce': 'squeeze_excite.reduce',
                       '_squeeze_excitation/_se_expand': 'squeeze_excite.expand',
                       '_conv2': 'project.conv', '_norm2': 'project.norm'},
}
# Our RetinaNetHead attributes -> the reference's: (convs, norms, output).
_HEAD_SUBNETS = {('class_convs', 'class_norms', 'class_logits'):
                 ('_cls_convs', '_cls_norms', '_classifier'),
                 ('box_convs', 'box_norms', 'box_deltas'):
                 ('_box_convs', '_box_norms', '_box_regressor')}


def reference_layer_order(plan):
  """Our layer for each `layer_with_weights-K` of the reference, in K order."""
  if plan.family == specs_lib.MOBILE and plan.scaling.block_repeats != 1:
    raise ValueError('Model Garden SpineNet-Mobile checkpoints with '
                     'block_repeats > 1 are not supported (no published model '
                     'uses them).')
  mobile = plan.family == specs_lib.MOBILE
  g = LayerGraph()

  def block_group(x, block):
    for repeat in range(plan.scaling.block_repeats):
      name = block_name(block.index, repeat)
      x = g.add([x], WeightedLayer(name, '', block.block_fn))
    return g.add([x])  # identity / linear activation

  def resample(x, parent, target, slot):
    name = resample_name(target.index, slot, parent.index)
    change = target.level - parent.level
    if mobile:
      for k in range(max(change, 0)):
        x = g.add([g.conv_bn(x, name, f'downsample[{k}]')])
    else:
      x = g.add([g.conv_bn(x, name, 'reduce')])
      if change > 0:
        x = g.add([g.conv_bn(x, name, 'downsample')])
        for _ in range(change - 1):
          x = g.add([x])  # max-pool
    if change < 0:
      x = g.upsample(x)
    return g.conv_bn(x, name, 'project')

  x = g.add([g.conv_bn(g.add([]), 'stem')])
  if not mobile:
    x = g.add([x])  # max-pool
  features = []
  for block in plan.blocks[:plan.num_stem_blocks]:
    x = block_group(x, block)
    features.append(x)
  for block in plan.blocks[plan.num_stem_blocks:]:
    parents = [resample(features[p], plan.blocks[p], block, slot)
               for slot, p in enumerate(block.parents)]
    parents += [features[m] for m in block.merged]
    if mobile:
      fused = parents[0]
      for other in parents[1:]:
        fused = g.add([fused, other])
    else:
      fused = g.add(parents)
    features.append(block_group(g.add([fused]), block))
  outputs = [g.add([g.conv_bn(features[block.index], f'endpoint{level}')])
             for level, block in sorted(plan.endpoint_blocks().items(),
                                        key=lambda kv: str(kv[0]))]
  return g.weighted_order(outputs)


def _resolve_attr(obj, path):
  """`obj.a.b[2]` for path 'a.b[2]'; `obj` itself for ''."""
  for part in filter(None, path.split('.')):
    if part.endswith(']'):
      name, index = part[:-1].split('[')
      obj = getattr(obj, name)[int(index)]
    else:
      obj = getattr(obj, part)
  return obj


def _conv_targets(conv, path):
  kernel = 'depthwise_kernel' if 'Depthwise' in type(conv).__name__ else 'kernel'
  yield f'{path}{kernel}', conv.kernel
  if getattr(conv, 'bias', None) is not None:
    yield f'{path}bias', conv.bias


def _bn_targets(norm, path):
  for name in _BN_VARS:
    yield f'{path}{name}', getattr(norm, name)


def _layer_targets(part, entry, path):
  """(key, our variable) of one reference layer stored under `path`."""
  layer = part.get_layer(entry.layer)
  if entry.kind == 'conv':
    yield from _conv_targets(_resolve_attr(layer, entry.unit), path)
  elif entry.kind == 'bn':
    yield from _bn_targets(_resolve_attr(layer, entry.unit), path)
  else:
    for ref_unit, our_unit in _BLOCK_UNITS[entry.kind].items():
      try:
        sub = _resolve_attr(layer, our_unit)
      except AttributeError:
        continue  # unit absent in this block (no projection, no expansion)
      if sub is None:
        continue
      if our_unit.endswith('.norm'):
        yield from _bn_targets(sub, f'{path}{ref_unit}/')
      else:  # conv or squeeze-excite dense conv (kernel and bias)
        yield from _conv_targets(sub, f'{path}{ref_unit}/')


def _functional_targets(part, order, prefix):
  for index, entry in enumerate(order):
    yield from _layer_targets(part, entry, f'{prefix}layer_with_weights-{index}/')


def _backbone_order(backbone):
  if isinstance(backbone, SpineNet):
    return reference_layer_order(backbone.plan)
  if isinstance(backbone, resnet.ResNet):
    return model_garden_resnet.resnet_layer_order(backbone)
  raise TypeError(f'convert_checkpoint: no Model Garden layout for '
                  f'{type(backbone).__name__} {backbone.name!r}; it takes a '
                  'SpineNet, a ResNet, a RetinaNet or a classifier on them.')


def _head_targets(head, prefix):
  for ours, ref in _HEAD_SUBNETS.items():
    convs, norms, output = (getattr(head, name) for name in ours)
    for i, conv in enumerate(convs):
      yield from _conv_targets(conv, f'{prefix}{ref[0]}/{i}/')
    for level_index, level in enumerate(head.levels):
      for i, norm in enumerate(norms[level]):
        yield from _bn_targets(norm, f'{prefix}{ref[1]}/{level_index}/{i}/')
    yield from _conv_targets(output, f'{prefix}{ref[2]}/')


def _towers(pairs, prefix):
  """Layers held in lists: (our list of convs or norms, reference name)."""
  for layers, ref in pairs:
    for i, layer in enumerate(layers):
      if hasattr(layer, 'moving_mean'):
        yield from _bn_targets(layer, f'{prefix}{ref}/{i}/')
      else:
        yield from _conv_targets(layer, f'{prefix}{ref}/{i}/')


def _rcnn_head_targets(model, root):
  """Mask R-CNN's heads under Model Garden's names (its detection head
  sits under `_config_dict`, where MaskRCNNModel keeps it)."""
  rpn, prefix = model.rpn_head, f'{root}rpn_head/'
  yield from _towers([(rpn.convs, '_convs')], prefix)
  for level_index, level in enumerate(rpn.levels):
    yield from _towers([(rpn.norms[level], f'_norms/{level_index}')], prefix)
  yield from _conv_targets(rpn.scores, f'{prefix}_classifier/')
  yield from _conv_targets(rpn.boxes, f'{prefix}_box_regressor/')
  box, prefix = model.box_head, f'{root}_config_dict/detection_head/'
  yield from _towers([(box.convs, '_convs'), (box.conv_norms, '_conv_norms'),
                      (box.fcs, '_fcs'), (box.fc_norms, '_fc_norms')], prefix)
  yield from _conv_targets(box.classifier, f'{prefix}_classifier/')
  yield from _conv_targets(box.box_regressor, f'{prefix}_box_regressor/')
  mask, prefix = model.mask_head, f'{root}mask_head/'
  yield from _towers([(mask.convs, '_convs'),
                      (mask.conv_norms, '_conv_norms')], prefix)
  yield from _conv_targets(mask.upsample, f'{prefix}_deconv/')
  yield from _bn_targets(mask.upsample_norm, f'{prefix}_deconv_bn/')
  yield from _conv_targets(mask.mask_logits, f'{prefix}_mask_regressor/')


def _detector_parts(model, root, backbone_key, decoder_key):
  """Backbone and decoder parts of a detector stored under `root`."""
  order = _backbone_order(model.backbone)
  parts = [('backbone', f'{root}{backbone_key}', order, list(
      _functional_targets(model.backbone, order, f'{root}{backbone_key}')))]
  if model.decoder is not None:
    order = model_garden_resnet.fpn_layer_order(model.decoder)
    parts.append(('decoder', f'{root}{decoder_key}', order, list(
        _functional_targets(model.decoder, order, f'{root}{decoder_key}'))))
  return parts


def _find_backbone_prefix(keys, where, prefix):
  """The object path of the functional model holding the backbone's layers."""
  holders = {m.group(1) for m in map(_LAYER_RE.match, keys) if m}
  if prefix is not None:
    if prefix not in holders:
      raise ValueError(f'{where}: no variables under prefix {prefix!r}; '
                       f'prefixes found: {sorted(holders)}.')
    return prefix
  # A classifier's model holds its backbone as one of its layers: skip it.
  inner = sorted(p for p in holders if not any(
      q.startswith(p + 'layer_with_weights-') for q in holders))
  if len(inner) == 1:
    return inner[0]
  backbone = [p for p in inner if p.endswith('backbone/')]
  if len(backbone) == 1:
    return backbone[0]
  raise ValueError(f'{where}: cannot tell which functional model is the '
                   f'backbone; pass prefix=, one of {inner}.')


def _find_root(keys, where, prefix, marker, what):
  """The object path of a RetinaNet / classifier: the part before `marker`."""
  roots = sorted({k[:k.index(marker)] for k in keys if marker in k})
  if prefix is not None:
    roots = [prefix] if prefix in roots else []
  if len(roots) == 1:
    return roots[0]
  raise ValueError(f'{where}: {"no" if not roots else "more than one"} '
                   f'Model Garden {what} in the checkpoint (looked for '
                   f'{marker!r}{f" under {prefix!r}" if prefix else ""}'
                   f'{f"; found {roots}, pass prefix=" if roots else ""}).')


def _find_classifier_layer(model):
  """The backbone (a layer with a Model Garden layout) of our classifier."""
  backbones = [l for l in model.layers
               if isinstance(l, (SpineNet, resnet.ResNet))]
  names = [l.name for l in model.layers]
  if len(backbones) != 1 or 'logits' not in names or 'spinal_head' in names:
    raise TypeError(f'convert_checkpoint: {model.name!r} is neither a '
                    'backbone, a RetinaNet nor a dense-head classifier from '
                    'build_classifier (Model Garden has no spinal head).')
  return backbones[0]


def _targets(model, keys, where, prefix):
  """The checkpoint scope of `model` (its object path) and its parts:
  [(part, prefix, weighted layers or None, [(key, our variable)])]."""
  if isinstance(model, RetinaNet):
    root = _find_root(keys, where, prefix, '_head/_classifier/', 'RetinaNet')
    parts = _detector_parts(model, root, '_backbone/', '_decoder/')
    parts.append(('head', f'{root}_head/', None,
                  list(_head_targets(model.head, f'{root}_head/'))))
    return root, parts
  if isinstance(model, MaskRCNN):
    root = _find_root(keys, where, prefix, 'rpn_head/_classifier/',
                      'Mask R-CNN')
    parts = _detector_parts(model, root, 'backbone/', 'decoder/')
    parts.append(('heads', root, None, list(_rcnn_head_targets(model, root))))
    return root, parts
  if isinstance(model, (SpineNet, resnet.ResNet)):
    backbone_prefix = _find_backbone_prefix(keys, where, prefix)
    order = _backbone_order(model)
    return backbone_prefix, [('backbone', backbone_prefix, order, list(
        _functional_targets(model, order, backbone_prefix)))]
  backbone = _find_classifier_layer(model)
  root = _find_root(keys, where, prefix, 'layer_with_weights-0/'
                    'layer_with_weights-0/', 'classifier')
  order = _backbone_order(backbone)
  parts = [('backbone', f'{root}layer_with_weights-0/', order, list(
      _functional_targets(backbone, order, f'{root}layer_with_weights-0/')))]
  index, head = 1, []
  if 'head_norm' in [l.name for l in model.layers]:
    head += _bn_targets(model.get_layer('head_norm'),
                        f'{root}layer_with_weights-1/')
    index = 2
  head += _conv_targets(model.get_layer('logits'),
                        f'{root}layer_with_weights-{index}/')
  return root, parts + [('head', root, None, head)]


def _open_checkpoint(checkpoint_path):
  import tensorflow as tf  # the checkpoint format is TensorFlow's

  if os.path.isdir(checkpoint_path):
    latest = tf.train.latest_checkpoint(checkpoint_path)
    if latest is None:
      raise ValueError(f'{checkpoint_path}: directory holds no checkpoint.')
    checkpoint_path = latest
  try:
    return checkpoint_path, tf.train.load_checkpoint(checkpoint_path)
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
    raise ValueError(f'{checkpoint_path}: not a readable TF2 checkpoint ({e}).'
                     ) from e


def convert_checkpoint(checkpoint_path, model, prefix=None):
  """Loads a Model Garden checkpoint of the same model into `model`.

  Args:
    checkpoint_path: a TF2 checkpoint (file prefix or directory; the latest
      checkpoint of a directory is used).
    model: our SpineNet / SpineNet-Mobile / ResNet backbone, our `RetinaNet`
      on one (backbone, FPN decoder if any, head), our `MaskRCNN` (backbone,
      FPN decoder if any, RPN, box and mask heads) or a `build_classifier`
      model with the dense head (backbone, head_norm, logits), built with
      the variant, levels and classes of the checkpoint.
    prefix: the object path in the checkpoint of the backbone (for a
      backbone, e.g. 'model/_backbone/') or of the whole model (RetinaNet,
      classifier, e.g. 'model/'); found automatically when unambiguous.

  Returns:
    The number of variables assigned: every variable of `model`. Anything
    missing, left over or of the wrong shape raises one ValueError with
    counts and examples before any variable is written.
  """
  checkpoint_path, reader = _open_checkpoint(checkpoint_path)
  shapes = {key[:-len(_VALUE_SUFFIX)]: tuple(shape) for key, shape in
            reader.get_variable_to_shape_map().items()
            if key.endswith(_VALUE_SUFFIX) and '.OPTIMIZER_SLOT' not in key}
  scope, parts = _targets(model, shapes, checkpoint_path, prefix)
  assignments, missing, wrong, layer_counts = [], [], [], []
  for part, part_prefix, order, targets in parts:
    for key, variable in targets:
      if key not in shapes:
        missing.append(f'{key} (our {variable.path})')
      elif shapes[key] != tuple(variable.shape):
        wrong.append(f'{key} {shapes[key]} vs our {variable.path} '
                     f'{tuple(variable.shape)}')
      else:
        assignments.append((variable, key))
    if order is not None:
      found = {m.group(2) for m in map(_LAYER_RE.match, shapes)
               if m and m.group(1) == part_prefix}
      if len(found) != len(order):
        layer_counts.append(f'the checkpoint has {len(found)} weighted layers '
                            f'under {part_prefix!r}, the model\'s {part} '
                            f'{len(order)}')
  targeted = {id(v) for _, _, _, targets in parts for _, v in targets}
  unassigned = [v.path for v in model.weights if id(v) not in targeted]
  expected = {key for _, _, _, targets in parts for key, _ in targets}
  unused = sorted(k for k in shapes if k.startswith(scope) and
                  k not in expected and k != 'save_counter')
  if layer_counts or missing or wrong or unassigned or unused:
    counts = []
    for what, names in (('differ in shape', wrong),
                        ('are missing from the checkpoint', missing),
                        ('have no checkpoint value', unassigned)):
      if names:
        counts.append(f'{len(names)} {what}, e.g. {"; ".join(names[:3])}')
    if unused:
      counts.append(f'{len(unused)} checkpoint values are not in the model, '
                    f'e.g. {"; ".join(unused[:3])}')
    raise ValueError(
        f'{checkpoint_path} does not match {type(model).__name__} '
        f'{model.name!r}: {"; ".join(layer_counts + [""])}of its '
        f'{len(model.weights)} variables, {", ".join(counts) or "all match"}. '
        'Build the model with the variant, levels, classes and specs the '
        'checkpoint was trained with.')
  for variable, key in assignments:  # all checks passed: now write
    variable.assign(np.asarray(reader.get_tensor(key + _VALUE_SUFFIX)))
  return len(assignments)


OUTPUT_SUFFIXES = ('.weights.h5', '.keras')


def define_flags(flag_values=None):
  """The converter's absl flags (scripts/convert_checkpoint.py defines them;
  defined on demand so that importing this module defines none)."""
  from absl import flags

  flag_values = flag_values or flags.FLAGS
  flags.DEFINE_string('checkpoint', None, 'Model Garden TF2 checkpoint '
                      'prefix or directory.', flag_values=flag_values)
  flags.DEFINE_string('model_id', None, 'One of '
                      f'{", ".join(_MODEL_IDS)}.',
                      flag_values=flag_values)
  flags.DEFINE_string('output', None, '.weights.h5 (weights) or .keras '
                      '(whole model).', flag_values=flag_values)
  flags.DEFINE_integer('input_size', None, 'Fixed square input size of the '
                       'saved model (default: any size).', lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_integer('min_level', 3, 'Lowest output level (SpineNet; a '
                       'ResNet gives levels 2..5).', flag_values=flag_values)
  flags.DEFINE_integer('max_level', 7, 'Highest output level (SpineNet).',
                       flag_values=flag_values)
  flags.DEFINE_string('activation', 'relu', 'Activation of the backbone.',
                      flag_values=flag_values)
  flags.DEFINE_string('prefix', None, "Backbone object path in the "
                      "checkpoint, e.g. 'model/backbone/'.",
                      flag_values=flag_values)
  for name in ('checkpoint', 'model_id', 'output'):
    flags.mark_flag_as_required(name, flag_values=flag_values)


def main(argv):
  """CLI (absl, after `define_flags`): converts a Model Garden checkpoint
  to a Keras weights/model file. User errors raise ValueError / OSError /
  cli.UserError naming the flag (one line under `cli.run`)."""
  import tempfile

  import tensorflow as tf
  from absl import flags

  from spinenet_tf import cli
  from spinenet_tf.models.backbone import build_backbone

  cli.refuse_arguments(argv)
  args = flags.FLAGS
  if not args.output.endswith(OUTPUT_SUFFIXES):
    raise cli.UserError(f'--output {args.output}: must end with .weights.h5 '
                        '(weights) or .keras (whole model).')
  if args.model_id not in _MODEL_IDS:
    raise cli.UserError(f'--model_id {args.model_id!r}: unknown; expected one '
                        f'of {", ".join(_MODEL_IDS)}.')
  is_resnet = resnet.is_resnet_id(args.model_id)
  levels = [f'--{n}' for n in ('min_level', 'max_level') if args[n].present]
  if is_resnet and levels:
    raise cli.UserError(f'{" and ".join(levels)}: a ResNet has levels 2..5; '
                        'drop the flag.')
  if not tf.io.gfile.exists(args.checkpoint) and not tf.io.gfile.glob(
      args.checkpoint + '.*'):
    raise cli.UserError(f'--checkpoint {args.checkpoint}: no such checkpoint '
                        '(a Model Garden TF2 checkpoint prefix or directory).')
  size = args.input_size
  if is_resnet:
    model = resnet.build_resnet(
        args.model_id, (size, size, 3), activation=args.activation)
  else:
    model = build_backbone(args.model_id, (size, size, 3), args.min_level,
                           args.max_level, activation=args.activation)
  try:
    count = convert_checkpoint(args.checkpoint, model, args.prefix)
  except ValueError as e:
    raise cli.UserError(f'--checkpoint {e}') from e
  out_dir = os.path.dirname(args.output) or '.'
  tf.io.gfile.makedirs(out_dir)
  suffix = next(s for s in OUTPUT_SUFFIXES if args.output.endswith(s))
  with tempfile.TemporaryDirectory() as local:  # Keras writes local files
    tmp = os.path.join(local, 'model' + suffix)
    if suffix == '.keras':
      model.save(tmp)
    else:
      model.save_weights(tmp)
    staged = f'{args.output}.tmp-{os.getpid()}'
    try:
      tf.io.gfile.copy(tmp, staged, overwrite=True)
      tf.io.gfile.rename(staged, args.output, overwrite=True)
    finally:
      if tf.io.gfile.exists(staged):
        tf.io.gfile.remove(staged)
  print(f'converted {count} variables of {model.name} {args.model_id} from '
        f'{args.checkpoint} -> {args.output}')
  return 0


def run_cli():
  """Defines the flags and runs `main` with one-line user errors."""
  from spinenet_tf import cli

  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_cli()
