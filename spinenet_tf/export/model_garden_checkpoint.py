"""Load a Model Garden (tf-models-official) SpineNet TF2 checkpoint into ours.

Model Garden's SpineNet is a tf_keras functional model; its TF2 checkpoints
name a layer's weights `<prefix>layer_with_weights-K/...`, where K is the
layer's position in the functional model's layer list. That list is sorted
by depth from the outputs, ties broken by depth-first visiting order from the
outputs, over every node of the graph (the weightless TF ops too). This
module rebuilds that node graph from our `NetworkPlan`, sorts it by the same
rule, and so knows which of our layers each K is. The reference must have
been built with a fixed input size, as Model Garden's configs do (with an
unknown size it silently drops the output merges).
"""

import dataclasses
import os
import re

import numpy as np

from spinenet_tf import specs as specs_lib
from spinenet_tf.models.backbone import block_name, resample_name

_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
_KEY_RE = re.compile(r'^(.*?)layer_with_weights-(\d+)/(.+)' +
                     re.escape(_VALUE_SUFFIX) + '$')

# Reference sublayer / variable names -> our attribute paths, per layer kind.
_BN_VARS = {'gamma': 'gamma', 'beta': 'beta', 'moving_mean': 'moving_mean',
            'moving_variance': 'moving_variance'}
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


@dataclasses.dataclass(frozen=True)
class WeightedLayer:
  """A reference layer with weights: our layer name, unit path and kind."""
  layer: str
  unit: str      # attribute path inside our layer ('' for the layer itself)
  kind: str      # 'conv', 'bn' or a block type


class _Graph:
  """The reference's node graph: inputs per node, weighted nodes marked."""

  def __init__(self):
    self.inputs = []
    self.weighted = {}

  def add(self, inputs, weighted=None):
    self.inputs.append(list(inputs))
    node = len(self.inputs) - 1
    if weighted is not None:
      self.weighted[node] = weighted
    return node

  def conv_bn(self, x, layer, unit=''):
    x = self.add([x], WeightedLayer(layer, unit + '.conv' if unit else 'conv',
                                    'conv'))
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


def reference_layer_order(plan):
  """Our layer for each `layer_with_weights-K` of the reference, in K order."""
  if plan.family == specs_lib.MOBILE and plan.scaling.block_repeats != 1:
    raise ValueError('Model Garden SpineNet-Mobile checkpoints with '
                     'block_repeats > 1 are not supported (no published model '
                     'uses them).')
  mobile = plan.family == specs_lib.MOBILE
  g = _Graph()

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
  for part in path.split('.'):
    if part.endswith(']'):
      name, index = part[:-1].split('[')
      obj = getattr(obj, name)[int(index)]
    else:
      obj = getattr(obj, part)
  return obj


def _variable_targets(model, entry):
  """Yields (reference sub-path, our variable) for one weighted layer."""
  layer = model.get_layer(entry.layer)
  if entry.kind == 'conv':
    conv = _resolve_attr(layer, entry.unit)
    name = 'depthwise_kernel' if 'Depthwise' in type(conv).__name__ else 'kernel'
    yield name, conv.kernel
  elif entry.kind == 'bn':
    norm = _resolve_attr(layer, entry.unit)
    for ref, ours in _BN_VARS.items():
      yield ref, getattr(norm, ours)
  else:
    for ref_unit, our_unit in _BLOCK_UNITS[entry.kind].items():
      try:
        sub = _resolve_attr(layer, our_unit)
      except AttributeError:
        continue  # unit absent in this block (no projection, no expansion)
      if sub is None:
        continue
      if our_unit.endswith('.norm'):
        for ref, ours in _BN_VARS.items():
          yield f'{ref_unit}/{ref}', getattr(sub, ours)
      elif 'squeeze_excite' in our_unit:
        yield f'{ref_unit}/kernel', sub.kernel
        yield f'{ref_unit}/bias', sub.bias
      else:
        kernel = ('depthwise_kernel' if 'Depthwise' in type(sub).__name__
                  else 'kernel')
        yield f'{ref_unit}/{kernel}', sub.kernel


def _find_prefix(keys, checkpoint_path, prefix):
  prefixes = sorted({m.group(1) for m in map(_KEY_RE.match, keys) if m})
  if prefix is not None:
    if prefix not in prefixes:
      raise ValueError(f'{checkpoint_path}: no variables under prefix '
                       f'{prefix!r}; prefixes found: {prefixes}.')
    return prefix
  if len(prefixes) == 1:
    return prefixes[0]
  backbone = [p for p in prefixes if p.endswith('backbone/')]
  if len(backbone) == 1:
    return backbone[0]
  raise ValueError(f'{checkpoint_path}: cannot tell which functional model is '
                   f'the backbone; pass prefix=, one of {prefixes}.')


def convert_checkpoint(checkpoint_path, model, prefix=None):
  """Loads a Model Garden SpineNet / SpineNet-Mobile checkpoint into `model`.

  Args:
    checkpoint_path: a TF2 checkpoint (file prefix or directory; the latest
      checkpoint of a directory is used).
    model: our `SpineNet` built with the same variant and levels.
    prefix: the object path of the backbone in the checkpoint, e.g.
      'model/backbone/'; found automatically when unambiguous.

  Returns:
    The number of variables assigned. Every variable of `model` is assigned;
    anything missing or of the wrong shape raises ValueError naming the key.
  """
  import tensorflow as tf  # the checkpoint format is TensorFlow's

  if os.path.isdir(checkpoint_path):
    latest = tf.train.latest_checkpoint(checkpoint_path)
    if latest is None:
      raise ValueError(f'{checkpoint_path}: directory holds no checkpoint.')
    checkpoint_path = latest
  try:
    reader = tf.train.load_checkpoint(checkpoint_path)
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
    raise ValueError(f'{checkpoint_path}: not a readable TF2 checkpoint ({e}).'
                     ) from e
  shapes = reader.get_variable_to_shape_map()
  prefix = _find_prefix(shapes, checkpoint_path, prefix)
  order = reference_layer_order(model.plan)
  ref_layers = {int(m.group(2)) for m in map(_KEY_RE.match, shapes)
                if m and m.group(1) == prefix}
  assignments, assigned, missing, wrong = [], set(), [], []
  for index, entry in enumerate(order):
    for sub_path, variable in _variable_targets(model, entry):
      key = f'{prefix}layer_with_weights-{index}/{sub_path}{_VALUE_SUFFIX}'
      if key not in shapes:
        missing.append(f'{key[:-len(_VALUE_SUFFIX)]} (our {variable.path})')
      elif tuple(shapes[key]) != tuple(variable.shape):
        wrong.append(f'{key[:-len(_VALUE_SUFFIX)]} {tuple(shapes[key])} vs '
                     f'our {variable.path} {tuple(variable.shape)}')
      else:
        assignments.append((variable, key))
        assigned.add(id(variable))
  unassigned = [v.path for v in model.weights if id(v) not in assigned and
                not any(v.path in m for m in missing + wrong)]
  if len(ref_layers) != len(order) or missing or wrong or unassigned:
    parts = []
    for what, names in (('differ in shape', wrong),
                        ('are missing from the checkpoint', missing),
                        ('have no checkpoint value', unassigned)):
      if names:
        parts.append(f'{len(names)} {what}, e.g. {"; ".join(names[:3])}')
    raise ValueError(
        f'{checkpoint_path} does not match this SpineNet: the checkpoint has '
        f'{len(ref_layers)} weighted layers under {prefix!r}, the model '
        f'{len(order)}; of its {len(model.weights)} variables, '
        f'{", ".join(parts) or "all match"}. Build the model with the '
        'variant, levels and specs the checkpoint was trained with.')
  for variable, key in assignments:  # all checks passed: now write
    variable.assign(np.asarray(reader.get_tensor(key)))
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
                      f'{", ".join(specs_lib.MODEL_IDS)}.',
                      flag_values=flag_values)
  flags.DEFINE_string('output', None, '.weights.h5 (weights) or .keras '
                      '(whole model).', flag_values=flag_values)
  flags.DEFINE_integer('input_size', None, 'Fixed square input size of the '
                       'saved model (default: any size).', lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_integer('min_level', 3, 'Lowest output level.',
                       flag_values=flag_values)
  flags.DEFINE_integer('max_level', 7, 'Highest output level.',
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

  if len(argv) > 1:
    raise cli.UserError(f'unexpected arguments {argv[1:]}; every option is a '
                        '--flag.')
  args = flags.FLAGS
  if not args.output.endswith(OUTPUT_SUFFIXES):
    raise cli.UserError(f'--output {args.output}: must end with .weights.h5 '
                        '(weights) or .keras (whole model).')
  if args.model_id not in specs_lib.MODEL_IDS:
    raise cli.UserError(f'--model_id {args.model_id!r}: unknown; expected one '
                        f'of {", ".join(specs_lib.MODEL_IDS)}.')
  if not tf.io.gfile.exists(args.checkpoint) and not tf.io.gfile.glob(
      args.checkpoint + '.*'):
    raise cli.UserError(f'--checkpoint {args.checkpoint}: no such checkpoint '
                        '(a Model Garden TF2 checkpoint prefix or directory).')
  size = args.input_size
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
  print(f'converted {count} variables of SpineNet-{args.model_id} from '
        f'{args.checkpoint} -> {args.output}')
  return 0


def run_cli():
  """Defines the flags and runs `main` with one-line user errors."""
  from spinenet_tf import cli

  define_flags()
  cli.run(main)


if __name__ == '__main__':
  run_cli()
