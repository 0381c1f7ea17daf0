"""The SpineNet backbone: block specs -> a Keras functional model.

`build_backbone('49', (640, 640, 3))` returns a `SpineNet` whose output is a
dict {'3': P3, ..., '7': P7}. The graph is built from `specs.make_plan`,
which resolves every block's widths and parents; this module only turns the
plan into layers.
"""

import dataclasses
import inspect
import os

import keras

from spinenet_tf import checks, rsp_specs
from spinenet_tf import specs as specs_lib
from spinenet_tf.layers import (BlockFusion, BottleneckBlock, ConvNormAct,
                                MBConvBlock, MobileResample, Resample,
                                ResidualBlock)
from spinenet_tf.layers.common import (PACKAGE, check_activation,
                                       from_kernel_settings_config,
                                       kernel_settings_config,
                                       refuse_unknown_keywords)


def block_name(index, repeat=0):
  """Layer name of repeat `repeat` of block `index` (stem blocks are 0, 1)."""
  return f'block{index:02d}' + (f'_repeat{repeat}' if repeat else '')


def resample_name(target_index, slot, parent_index):
  """Layer name of the resampling of input `slot` (0 or 1) of a block."""
  return f'{block_name(target_index)}_resample{slot}_from{parent_index:02d}'


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpineNet(keras.Model):
  """SpineNet or SpineNet-Mobile as a functional Keras model.

  Args:
    block_specs: BlockSpecs (or 4-tuples / dicts) of the scale-permuted part.
    scaling: a `specs.Scaling` or a dict of its fields.
    input_shape: (height, width, 3); None for any size. Fixed sizes must be
      divisible by 2**7 (the highest level).
    min_level, max_level: the output levels.
    activation: 'relu' or 'swish'.
    use_sync_bn: synchronized BatchNorm across replicas.
    stochastic_depth_rate: drop rate of the last block (block i of n gets
      rate * i / n).
    weighted_fusion: learn a scalar weight per fused parent.
  """

  def __init__(self, block_specs, scaling, input_shape=(None, None, 3),
               min_level=3, max_level=7, activation='relu', use_sync_bn=False,
               norm_momentum=0.99, norm_epsilon=1e-3,
               stochastic_depth_rate=0.0, weighted_fusion=False,
               kernel_initializer='VarianceScaling', kernel_regularizer=None,
               name='spinenet', trainable=True):
    if isinstance(scaling, dict):
      scaling = specs_lib.scaling_from_dict(scaling)
    _check_options(activation, use_sync_bn, norm_momentum, norm_epsilon,
                   weighted_fusion, input_shape)
    plan = specs_lib.make_plan(block_specs, scaling, min_level, max_level,
                               stochastic_depth_rate)
    input_shape = tuple(input_shape)
    specs_lib.check_input_size(plan, input_shape)
    unit_args = dict(
        norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
        use_sync_bn=use_sync_bn, kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer)
    builder = _GraphBuilder(plan, activation, weighted_fusion, unit_args)
    inputs = keras.Input(shape=input_shape, name='image')
    outputs = builder.build(inputs)
    super().__init__(inputs=inputs, outputs=outputs, name=name,
                     trainable=trainable)
    self.plan = plan
    self.block_specs = tuple(specs_lib.parse_block_specs(block_specs))
    self.scaling = scaling
    self.image_shape = input_shape
    self.min_level = min_level
    self.max_level = max_level
    self.activation = activation
    self.use_sync_bn = use_sync_bn
    self.norm_momentum = norm_momentum
    self.norm_epsilon = norm_epsilon
    self.stochastic_depth_rate = stochastic_depth_rate
    self.weighted_fusion = weighted_fusion
    self.kernel_initializer = kernel_initializer
    self.kernel_regularizer = kernel_regularizer

  @property
  def output_specs(self):
    """{level: shape} of the outputs."""
    return {k: tuple(v.shape) for k, v in self.output.items()}

  def get_config(self):
    return {
        'name': self.name,
        'trainable': self.trainable,
        'block_specs': [s.to_dict() for s in self.block_specs],
        'scaling': dataclasses.asdict(self.scaling),
        'input_shape': list(self.image_shape),
        'min_level': self.min_level,
        'max_level': self.max_level,
        'activation': self.activation,
        'use_sync_bn': self.use_sync_bn,
        'norm_momentum': self.norm_momentum,
        'norm_epsilon': self.norm_epsilon,
        'stochastic_depth_rate': self.stochastic_depth_rate,
        'weighted_fusion': self.weighted_fusion,
        **kernel_settings_config(self.kernel_initializer,
                                 self.kernel_regularizer),
    }

  @classmethod
  def from_config(cls, config):
    return from_kernel_settings_config(cls, config)


def _check_options(activation, use_sync_bn, norm_momentum, norm_epsilon,
                   weighted_fusion, input_shape):
  check_activation(activation)
  checks.boolean('use_sync_bn', use_sync_bn)
  checks.boolean('weighted_fusion', weighted_fusion)
  checks.number('norm_momentum', norm_momentum, 0, 1, high_open=True)
  checks.number('norm_epsilon', norm_epsilon, 0, low_open=True)
  checks.image_shape('input_shape', input_shape)


class _GraphBuilder:
  """Creates the layers of a plan and wires them on symbolic tensors."""

  def __init__(self, plan, activation, weighted_fusion, unit_args):
    self.plan = plan
    self.scaling = plan.scaling
    self.mobile = plan.family == specs_lib.MOBILE
    self.activation = activation
    self.weighted_fusion = weighted_fusion
    self.unit_args = unit_args

  def build(self, inputs):
    features = self._stem(inputs)
    used = self.plan.used_blocks()
    for block in self.plan.blocks[self.plan.num_stem_blocks:]:
      if block.index not in used:
        features.append(None)
        continue
      if len(block.parents) == 1:  # a chain block: strided, no fusion
        parent = self.plan.blocks[block.parents[0]]
        features.append(self._block_group(
            features[parent.index], block, 2 ** (block.level - parent.level)))
        continue
      parents = [self._resample(features[p], self.plan.blocks[p], block, slot)
                 for slot, p in enumerate(block.parents)]
      parents += [features[m] for m in block.merged]
      x = BlockFusion(self.activation, self.weighted_fusion,
                      name=f'{block_name(block.index)}_fusion')(parents)
      features.append(self._block_group(x, block))
    return {
        str(level): ConvNormAct(self.scaling.endpoints_num_filters, 1,
                                activation=self.activation,
                                name=f'endpoint{level}', **self.unit_args)(
                                    features[block.index])
        for level, block in self.plan.endpoint_blocks().items()
    }

  def _stem(self, inputs):
    if self.mobile:
      stem_filters, kernel = self.plan.blocks[0].in_channels, 3
    else:
      stem_filters, kernel = 64, 7
    x = ConvNormAct(stem_filters, kernel, 2, self.activation, name='stem',
                    **self.unit_args)(inputs)
    if not self.mobile:
      x = keras.layers.MaxPooling2D(3, 2, padding='same', name='stem_pool')(x)
    features = []
    for block in self.plan.blocks[:self.plan.num_stem_blocks]:
      strides = 2 if self.mobile and block.level == 2 else 1
      x = self._block_group(x, block, strides)
      features.append(x)
    return features

  def _block_group(self, x, block, strides=1):
    for repeat in range(self.scaling.block_repeats):
      in_channels = x.shape[-1]
      x = self._make_block(block, in_channels, strides if repeat == 0 else 1,
                           block_name(block.index, repeat))(x)
    return x

  def _make_block(self, block, in_channels, strides, name):
    common = dict(strides=strides, activation=self.activation,
                  stochastic_depth_rate=block.stochastic_depth_rate, name=name,
                  **self.unit_args)
    if block.block_fn == specs_lib.MBCONV:
      return MBConvBlock(in_channels, block.filters, self.scaling.expand_ratio,
                         self.scaling.se_ratio, **common)
    use_projection = in_channels != block.out_channels or strides != 1
    block_cls = (BottleneckBlock if block.block_fn == specs_lib.BOTTLENECK
                 else ResidualBlock)
    return block_cls(block.filters, use_projection, **common)

  def _resample(self, x, parent, target, slot):
    name = resample_name(target.index, slot, parent.index)
    common = dict(activation=self.activation, name=name, **self.unit_args)
    level_change = target.level - parent.level
    if self.mobile:
      return MobileResample(level_change, target.in_channels, **common)(x)
    return Resample(level_change, parent.filters, self.scaling.resample_alpha,
                    target.in_channels, **common)(x)


def resolve_block_specs(model_id_or_specs, scaling):
  """Returns (block_specs, Scaling, YAML path or None) for a model id, a YAML
  path or specs."""
  if isinstance(scaling, str):
    scaling = specs_lib.model_scaling(scaling)
  elif isinstance(scaling, dict):
    scaling = specs_lib.scaling_from_dict(scaling)
  if isinstance(model_id_or_specs, (str, os.PathLike)):
    name = os.fspath(model_id_or_specs)
    if name.endswith(('.yaml', '.yml')):
      block_specs, file_scaling = specs_lib.load_specs_yaml(name)
      scaling = scaling or file_scaling
      source = name
    else:
      model_id = specs_lib.resolve_model_id(name)
      scaling = scaling or specs_lib.model_scaling(model_id)
      if model_id in specs_lib.SEARCHED_MODELS:
        return rsp_specs.BLOCK_SPECS[model_id], scaling, None
      return specs_lib.default_block_specs(scaling.family), scaling, None
  else:
    block_specs = specs_lib.parse_block_specs(model_id_or_specs)
    source = None
  if scaling is None:
    try:
      mobile = specs_lib.infer_family(block_specs) == specs_lib.MOBILE
    except ValueError as e:
      raise ValueError(f'block spec file {source!r}: {e}' if source
                       else str(e)) from e
    scaling = specs_lib.SCALING['mobile-49' if mobile else '49']
  return block_specs, scaling, source


# SpineNet options build_backbone passes on (the rest are its own arguments).
BACKBONE_OPTIONS = tuple(
    p for p in inspect.signature(SpineNet.__init__).parameters
    if p not in ('self', 'block_specs', 'scaling', 'input_shape', 'min_level',
                 'max_level'))
# Model Garden's names of the scaling knobs, accepted as keyword overrides.
SCALING_OVERRIDES = tuple(f for f in specs_lib.SCALING_FIELDS
                          if f != 'family')


def build_backbone(model_id_or_specs='49', input_shape=(None, None, 3),
                   min_level=3, max_level=7, scaling=None, **kwargs):
  """Builds a SpineNet backbone.

  Args:
    model_id_or_specs: a model id ('49S', '49', '96', '143', '143L', '190',
      'mobile-49', 'mobile-49S', 'mobile-49XS'; 'R0-SP53' from `rsp_specs`
      at SpineNet-49's scaling), a path to a YAML block-spec file, or a list
      of BlockSpecs / 4-tuples / dicts.
    input_shape: (height, width, 3); None for any size.
    min_level, max_level: output levels.
    scaling: a `Scaling`, a dict of its fields, or a model id whose scaling to
      use; defaults to the model id's (or SpineNet-49's for custom specs).
    **kwargs: `SpineNet` options (`BACKBONE_OPTIONS`: activation,
      use_sync_bn, stochastic_depth_rate, weighted_fusion, norm_momentum,
      ...) and, as in Model Garden, overrides of single scaling fields
      (`SCALING_OVERRIDES`: endpoints_num_filters, filter_size_scale,
      resample_alpha, block_repeats, expand_ratio, se_ratio). Anything else
      is a TypeError naming it.

  Returns:
    A `SpineNet` keras.Model mapping images to {str(level): features}.
  """
  refuse_unknown_keywords('build_backbone', kwargs,
                          BACKBONE_OPTIONS + SCALING_OVERRIDES)
  overrides = {k: kwargs.pop(k) for k in SCALING_OVERRIDES if k in kwargs}
  block_specs, scaling, source = resolve_block_specs(model_id_or_specs, scaling)
  try:
    if overrides:
      scaling = dataclasses.replace(scaling, **overrides)
      specs_lib.validate_scaling(scaling)
    return SpineNet(block_specs, scaling, input_shape, min_level, max_level,
                    **kwargs)
  except ValueError as e:
    if source is None:
      raise
    raise ValueError(f'block spec file {source!r}: {e}') from e


def _constructor(model_id):
  def build(input_shape=(None, None, 3), **kwargs):
    return build_backbone(model_id, input_shape, **kwargs)
  build.__name__ = 'spinenet_' + model_id.lower().replace('-', '_')
  build.__doc__ = f'SpineNet {model_id} backbone; see `build_backbone`.'
  return build


spinenet_49s = _constructor('49S')
spinenet_49 = _constructor('49')
spinenet_96 = _constructor('96')
spinenet_143 = _constructor('143')
spinenet_143l = _constructor('143L')
spinenet_190 = _constructor('190')
spinenet_mobile_49 = _constructor('mobile-49')
spinenet_mobile_49s = _constructor('mobile-49S')
spinenet_mobile_49xs = _constructor('mobile-49XS')
