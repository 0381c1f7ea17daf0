"""SpineNet block specs, the scaling table, YAML loading and validation.

A SpineNet is data: a list of `BlockSpec` (the scale permutation found by
NAS) plus a `Scaling` (widths and repeats). This module holds both tables and
turns a spec list into a `NetworkPlan`: every block's level, width and
parents, with the output merges resolved. The builder, the architecture
picture and the checkpoint converter all read that one plan.
"""

import dataclasses
import difflib
import os
import re
from typing import Iterable, Sequence

import yaml

from spinenet_tf import checks, io_utils

BOTTLENECK = 'bottleneck'
RESIDUAL = 'residual'
MBCONV = 'mbconv'

SPINENET = 'spinenet'
MOBILE = 'spinenet_mobile'

# Filters per level before `filter_size_scale` (levels of the feature map).
FILTER_SIZES = {1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}
MOBILE_FILTER_SIZES = {0: 8, 1: 16, 2: 24, 3: 40, 4: 80, 5: 112, 6: 112,
                       7: 112}

BLOCK_TYPES = {SPINENET: (BOTTLENECK, RESIDUAL), MOBILE: (MBCONV,)}
ALL_BLOCK_TYPES = (BOTTLENECK, RESIDUAL, MBCONV)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One block: its level, type, one or two input offsets, output flag.

  `input_offsets` index the list of all blocks built so far, the stem blocks
  first (two stem blocks, so offset 0 and 1 are the stem). Two offsets make a
  scale-permuted block (both parents resampled and fused). One offset makes a
  chain block, as in a ResNet stage: it reads its parent directly, at the
  parent's level or one level up (stride 2), and is not an output; a
  scale-decreased stem (R[N] of R[N]-SP[M]) is written with chain blocks.
  SpineNet (not SpineNet-Mobile) only.
  """
  level: int
  block_fn: str
  input_offsets: tuple
  is_output: bool

  def to_dict(self):
    return {'level': self.level, 'block_fn': self.block_fn,
            'input_offsets': list(self.input_offsets),
            'is_output': self.is_output}


def specs_from_rows(rows):
  """BlockSpecs from (level, block_fn, input_offsets, is_output) rows."""
  return tuple(BlockSpec(level, fn, tuple(offsets), out)
               for level, fn, offsets, out in rows)


B, R, M = BOTTLENECK, RESIDUAL, MBCONV
SPINENET_BLOCK_SPECS = specs_from_rows([
    (2, B, (0, 1), False), (4, R, (0, 1), False), (3, B, (2, 3), False),
    (4, B, (2, 4), False), (6, R, (3, 5), False), (4, B, (3, 5), False),
    (5, R, (6, 7), False), (7, R, (6, 8), False), (5, B, (8, 9), False),
    (5, B, (8, 10), False), (4, B, (5, 10), True), (3, B, (4, 10), True),
    (5, B, (7, 12), True), (7, B, (5, 14), True), (6, B, (12, 14), True),
    (2, B, (2, 13), True),
])
SPINENET_MOBILE_BLOCK_SPECS = specs_from_rows([
    (2, M, (0, 1), False), (2, M, (1, 2), False), (4, M, (1, 2), False),
    (3, M, (3, 4), False), (4, M, (3, 5), False), (6, M, (4, 6), False),
    (4, M, (4, 6), False), (5, M, (7, 8), False), (7, M, (7, 9), False),
    (5, M, (9, 10), False), (5, M, (9, 11), False), (4, M, (6, 11), True),
    (3, M, (5, 11), True), (5, M, (8, 13), True), (7, M, (6, 15), True),
    (6, M, (13, 15), True),
])
del B, R, M


@dataclasses.dataclass(frozen=True)
class Scaling:
  """Width and depth of one SpineNet variant."""
  family: str = SPINENET
  endpoints_num_filters: int = 256
  filter_size_scale: float = 1.0
  resample_alpha: float = 0.5
  block_repeats: int = 1
  expand_ratio: int = 6      # SpineNet-Mobile only
  se_ratio: float = 0.2      # SpineNet-Mobile only


SCALING = {
    '49S': Scaling(SPINENET, 128, 0.65, 0.5, 1),
    '49': Scaling(SPINENET, 256, 1.0, 0.5, 1),
    '96': Scaling(SPINENET, 256, 1.0, 0.5, 2),
    '143': Scaling(SPINENET, 256, 1.0, 1.0, 3),
    '143L': Scaling(SPINENET, 256, 1.3, 1.0, 3),
    '190': Scaling(SPINENET, 512, 1.3, 1.0, 4),
    'mobile-49': Scaling(MOBILE, 48, 1.0),
    'mobile-49S': Scaling(MOBILE, 40, 0.65),
    'mobile-49XS': Scaling(MOBILE, 24, 0.6),
}
MODEL_IDS = tuple(SCALING)
# Searched networks with no Model Garden twin (specs in `rsp_specs`), so not
# in MODEL_IDS: model id -> the model id whose scaling they are built at.
SEARCHED_MODELS = {'R0-SP53': '49'}


def _spelling(model_id):
  """A model id without case, separators or the 'spinenet' prefix."""
  key = re.sub(r'[\s_-]', '', str(model_id)).lower()
  return key[len('spinenet'):] if key.startswith('spinenet') else key


def resolve_model_id(model_id) -> str:
  """Returns the canonical id for spellings like '49', 'SpineNet-49',
  'mobile-49xs', 'SpineNet_Mobile 49S' (case, '-', '_' and spaces aside)."""
  known = MODEL_IDS + tuple(SEARCHED_MODELS)
  by_spelling = {_spelling(k): k for k in known}
  if isinstance(model_id, (str, int)) and not isinstance(model_id, bool):
    if _spelling(model_id) in by_spelling:
      return by_spelling[_spelling(model_id)]
  close = difflib.get_close_matches(_spelling(model_id), by_spelling, n=1)
  hint = f' (did you mean {by_spelling[close[0]]!r}?)' if close else ''
  if isinstance(model_id, str) and os.path.isfile(model_id):
    hint = ' (a block spec file must end with .yaml or .yml)'
  raise ValueError(f'Unknown SpineNet model_id {model_id!r}{hint}; valid '
                   f'model ids: {", ".join(known)}.')


def model_scaling(model_id) -> Scaling:
  """The `Scaling` of a model id in any spelling `resolve_model_id` takes."""
  model_id = resolve_model_id(model_id)
  return SCALING[SEARCHED_MODELS.get(model_id, model_id)]


def default_block_specs(family: str):
  return SPINENET_BLOCK_SPECS if family == SPINENET else SPINENET_MOBILE_BLOCK_SPECS


def filter_sizes(family: str):
  return FILTER_SIZES if family == SPINENET else MOBILE_FILTER_SIZES


# --------------------------------------------------------------------------
# Parsing user specs
# --------------------------------------------------------------------------

_SPEC_FIELDS = ('level', 'block_fn', 'input_offsets', 'is_output')


def parse_block_specs(rows: Iterable) -> tuple:
  """Builds BlockSpecs from BlockSpec objects, 4-tuples or dicts.

  Raises ValueError naming the block index and field for malformed rows.
  """
  if isinstance(rows, (str, bytes, dict)) or not isinstance(rows, Iterable):
    raise ValueError(f'block specs must be a list of blocks, got {rows!r}.')
  specs = []
  for i, row in enumerate(rows):
    if isinstance(row, BlockSpec):
      specs.append(row)
      continue
    if isinstance(row, dict):
      unknown = sorted(set(row) - set(_SPEC_FIELDS))
      if unknown:
        raise ValueError(f'block {i}: unknown field(s) {unknown}; fields are '
                         f'{list(_SPEC_FIELDS)}.')
      missing = [f for f in _SPEC_FIELDS if f not in row]
      if missing:
        raise ValueError(f'block {i}: missing field(s) {missing}.')
      values = [row[f] for f in _SPEC_FIELDS]
    elif isinstance(row, (list, tuple)) and len(row) == 4:
      values = list(row)
    else:
      raise ValueError(f'block {i}: expected a mapping with fields '
                       f'{list(_SPEC_FIELDS)} or a 4-item list, got {row!r}.')
    level, block_fn, offsets, is_output = values
    if isinstance(level, bool) or not isinstance(level, int):
      raise ValueError(f'block {i}: field level must be an integer, got {level!r}.')
    if block_fn not in ALL_BLOCK_TYPES:
      raise ValueError(f'block {i}: unknown block_fn {block_fn!r}; block types '
                       f'are {BOTTLENECK!r}, {RESIDUAL!r} (SpineNet) and '
                       f'{MBCONV!r} (SpineNet-Mobile).')
    if (not isinstance(offsets, (list, tuple)) or len(offsets) not in (1, 2)
        or not all(isinstance(o, int) and not isinstance(o, bool)
                   for o in offsets)):
      raise ValueError(f'block {i}: field input_offsets must be one integer '
                       f'(a chain block) or two integers, got {offsets!r}.')
    if not isinstance(is_output, bool):
      raise ValueError(f'block {i}: field is_output must be true or false, '
                       f'got {is_output!r}.')
    specs.append(BlockSpec(level, block_fn, tuple(offsets), is_output))
  if not specs:
    raise ValueError('block specs are empty.')
  return tuple(specs)


def infer_family(specs) -> str:
  """The family of specs that do not say it: Mobile for MBConv blocks.
  Raises ValueError if the blocks mix both families."""
  mobile = [i for i, s in enumerate(specs) if s.block_fn == MBCONV]
  if not mobile:
    return SPINENET
  other = next((i for i, s in enumerate(specs) if s.block_fn != MBCONV), None)
  if other is not None:
    raise ValueError(
        f'block {other} is {specs[other].block_fn!r} but block {mobile[0]} '
        f'is {MBCONV!r}: a network is either SpineNet ({BOTTLENECK}, '
        f'{RESIDUAL}) or SpineNet-Mobile ({MBCONV}).')
  return MOBILE


def load_specs_yaml(path: str):
  """Reads block specs (and optional scaling) from a YAML file.

  The file holds `block_specs:` (a list of mappings or 4-item lists) and
  optionally `scaling:` with fields of `Scaling`. Returns (specs, scaling or
  None).
  """
  text = io_utils.read_text(path, 'block spec file')
  try:
    data = yaml.safe_load(text)
  except yaml.YAMLError as e:
    raise ValueError(f'block spec file {path!r} is not valid YAML: {e}') from e
  if isinstance(data, list):
    data = {'block_specs': data}
  if not isinstance(data, dict) or 'block_specs' not in data:
    raise ValueError(f'block spec file {path!r}: expected a top-level '
                     '`block_specs:` list.')
  unknown = sorted(set(data) - {'block_specs', 'scaling'})
  if unknown:
    raise ValueError(f'block spec file {path!r}: unknown top-level key(s) {unknown}.')
  try:
    specs = parse_block_specs(data['block_specs'])
  except ValueError as e:
    raise ValueError(f'block spec file {path!r}: {e}') from e
  scaling = None
  if data.get('scaling') is not None:
    scaling = scaling_from_dict(data['scaling'], source=path)
  return specs, scaling


def write_specs_yaml(block_specs, path, scaling=None):
  """Writes block specs (and optional scaling) as a YAML file that
  `load_specs_yaml` and `build_backbone(path)` read; returns `path`."""
  data = {'block_specs': [s.to_dict() for s in parse_block_specs(block_specs)]}
  if scaling is not None:
    data['scaling'] = dataclasses.asdict(scaling)
  return io_utils.atomic_write(path, yaml.safe_dump(data, sort_keys=False))


def scaling_from_dict(values: dict, source: str = 'scaling') -> Scaling:
  """A checked `Scaling` from a mapping of its fields; errors name
  `source` (a file, or 'scaling') and the field."""
  if not isinstance(values, dict):
    raise ValueError(f'{source}: scaling must be a mapping of '
                     f'{SCALING_FIELDS}, got {values!r}.')
  unknown = sorted(set(values) - set(SCALING_FIELDS))
  if unknown:
    raise ValueError(f'{source}: unknown scaling field(s) {unknown}; fields are '
                     f'{sorted(SCALING_FIELDS)}.')
  scaling = Scaling(**values)
  try:
    validate_scaling(scaling)
  except ValueError as e:
    if source == 'scaling':
      raise
    raise ValueError(f'{source}: {e}') from e
  return scaling


SCALING_FIELDS = tuple(f.name for f in dataclasses.fields(Scaling))


# Scaling fields only one family uses; elsewhere they must keep the default.
FAMILY_FIELDS = {SPINENET: ('resample_alpha',),
                 MOBILE: ('expand_ratio', 'se_ratio')}


def validate_scaling(scaling: Scaling):
  """Raises ValueError naming the first field of `scaling` out of type or
  range, or set for the family that does not use it."""
  checks.choice('scaling.family', scaling.family, tuple(BLOCK_TYPES))
  checks.integer('scaling.endpoints_num_filters',
                 scaling.endpoints_num_filters, 1)
  checks.number('scaling.filter_size_scale', scaling.filter_size_scale, 0,
                low_open=True)
  checks.number('scaling.resample_alpha', scaling.resample_alpha, 0,
                low_open=True)
  checks.integer('scaling.block_repeats', scaling.block_repeats, 1)
  checks.integer('scaling.expand_ratio', scaling.expand_ratio, 1)
  checks.number('scaling.se_ratio', scaling.se_ratio, 0, 1)
  default = Scaling()
  for family, names in FAMILY_FIELDS.items():
    for name in names:
      value = getattr(scaling, name)
      if family != scaling.family and value != getattr(default, name):
        raise ValueError(f'scaling.{name} = {value!r} has no effect on '
                         f'{scaling.family}: only {family} uses it.')


# --------------------------------------------------------------------------
# The network plan: blocks, widths and resolved connections
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PlannedBlock:
  """A block of the built network (stem blocks included)."""
  index: int            # position in the list of all blocks, stem first
  level: int
  block_fn: str
  filters: int          # inner width of the block
  out_channels: int     # channels of the block's output
  in_channels: int      # channels of its input: the fused parents are
                        # projected to it; stem and chain blocks read it
  parents: tuple        # indices of the resampled parents (one for a stem
                        # or chain block: its input, not resampled)
  merged: tuple         # indices of earlier unconnected blocks summed in
  is_output: bool
  is_stem: bool
  stochastic_depth_rate: float


@dataclasses.dataclass(frozen=True)
class NetworkPlan:
  family: str
  scaling: Scaling
  blocks: tuple         # PlannedBlock, stem first
  min_level: int
  max_level: int

  @property
  def num_stem_blocks(self):
    return sum(b.is_stem for b in self.blocks)

  def endpoint_blocks(self):
    """Maps each level min..max to the output block that provides it."""
    outputs = {b.level: b for b in self.blocks if b.is_output}
    return {level: outputs[level]
            for level in range(self.min_level, self.max_level + 1)}

  def used_blocks(self):
    """Indices of the blocks that feed an endpoint (others are never built)."""
    used, stack = set(), [b.index for b in self.endpoint_blocks().values()]
    while stack:
      i = stack.pop()
      if i in used:
        continue
      used.add(i)
      stack.extend(self.blocks[i].parents + self.blocks[i].merged)
    return used

  @property
  def highest_level(self):
    return max([self.max_level] + [b.level for b in self.blocks])


def _block_channels(block_fn, filters):
  return filters * 4 if block_fn == BOTTLENECK else filters


def validate_specs(specs: Sequence[BlockSpec], family: str, min_level: int,
                   max_level: int, num_stem_blocks: int = 2):
  """Raises ValueError naming the block index and field of the first problem."""
  sizes = filter_sizes(family)
  lowest, highest = min(sizes), max(sizes)
  checks.integer('min_level', min_level)
  checks.integer('max_level', max_level)
  if min_level > max_level:
    raise ValueError(f'min_level ({min_level}) must not exceed max_level '
                     f'({max_level}).')
  if min_level < lowest or max_level > highest:
    raise ValueError(f'min_level/max_level must lie in [{lowest}, {highest}] for '
                     f'{family}, got [{min_level}, {max_level}].')
  allowed = BLOCK_TYPES[family]
  output_levels = {}
  for i, spec in enumerate(specs):
    if spec.block_fn not in allowed:
      raise ValueError(f'block {i}: unknown block_fn {spec.block_fn!r} for '
                       f'{family}; expected one of {list(allowed)}.')
    if not lowest <= spec.level <= highest:
      raise ValueError(f'block {i}: level {spec.level} out of range '
                       f'[{lowest}, {highest}].')
    built_so_far = num_stem_blocks + i
    for k, offset in enumerate(spec.input_offsets):
      if offset < 0 or offset >= built_so_far:
        direction = 'points forward' if offset >= built_so_far else 'is negative'
        raise ValueError(
            f'block {i}: input_offsets[{k}] = {offset} {direction}; block {i} '
            f'can read blocks 0..{built_so_far - 1} (stem blocks first).')
    if len(spec.input_offsets) == 1:
      _check_chain_block(i, spec, specs, family, num_stem_blocks)
    if spec.is_output:
      level = min(spec.level, max_level) if family == MOBILE else spec.level
      if level in output_levels:
        raise ValueError(f'block {i}: is_output duplicates output level {level} '
                         f'already given by block {output_levels[level]}.')
      output_levels[level] = i
  for level in range(min_level, max_level + 1):
    if level not in output_levels:
      raise ValueError(f'level {level} is requested (min_level={min_level}, '
                       f'max_level={max_level}) but no block has is_output '
                       f'at level {level}; output levels are '
                       f'{sorted(output_levels)}.')


def _check_chain_block(i, spec, specs, family, num_stem_blocks):
  """Raises ValueError unless block `i` (one input offset) is a valid chain
  block: SpineNet, not an output, at its parent's level or one above."""
  name = f'block {i}: a chain block (one input offset)'
  if family != SPINENET:
    raise ValueError(f'{name} is SpineNet-only; {family} blocks take two '
                     'input offsets.')
  if spec.is_output:
    raise ValueError(f'{name} cannot have is_output: output blocks fuse two '
                     'inputs.')
  parent = spec.input_offsets[0]
  parent_level = (2 if parent < num_stem_blocks
                  else specs[parent - num_stem_blocks].level)
  if spec.level - parent_level not in (0, 1):
    raise ValueError(f'{name} stays at its parent\'s level or goes one level '
                     f'up; level {spec.level} reads block {parent} at level '
                     f'{parent_level}.')


def make_plan(specs: Sequence[BlockSpec], scaling: Scaling, min_level=3,
              max_level=7, stochastic_depth_rate=0.0) -> NetworkPlan:
  """Validates `specs` and resolves every block's widths and parents.

  Output blocks also sum in every earlier block of the same level and output
  width that has no outgoing connection yet (the published wiring). The
  merges follow levels, not tensor shapes, so the architecture is the same
  for every input size.
  """
  validate_scaling(scaling)
  family = scaling.family
  checks.number('stochastic_depth_rate', stochastic_depth_rate, 0, 1,
                high_open=True)
  specs = parse_block_specs(specs)
  validate_specs(specs, family, min_level, max_level)
  sizes = filter_sizes(family)
  scale = scaling.filter_size_scale

  def width(level):
    return int(sizes[level] * scale)

  narrowest = min(sizes, key=sizes.get)
  if width(narrowest) < 1:
    raise ValueError(f'scaling.filter_size_scale {scale} leaves level '
                     f'{narrowest} blocks with 0 filters ({sizes[narrowest]} '
                     f'x {scale}); use at least {1 / sizes[narrowest]:.3g}.')

  if family == SPINENET:
    stem_levels, stem_fn = (2, 2), BOTTLENECK
  else:
    stem_levels, stem_fn = (1, 2), MBCONV
  blocks = []
  for i, level in enumerate(stem_levels):
    filters = width(level)
    in_channels = (64 if family == SPINENET and i == 0 else
                   blocks[-1].out_channels if blocks else width(0))
    blocks.append(PlannedBlock(i, level, stem_fn, filters,
                               _block_channels(stem_fn, filters), in_channels,
                               (i - 1,) if i else (), (), False, True, 0.0))
  outgoing = [0] * len(blocks)
  for block in blocks:
    for p in block.parents:
      outgoing[p] += 1
  for i, spec in enumerate(specs):
    level = min(spec.level, max_level) if family == MOBILE else spec.level
    filters = width(level)
    parents = tuple(spec.input_offsets)
    in_channels = (blocks[parents[0]].out_channels if len(parents) == 1 else
                   _block_channels(spec.block_fn, filters))
    for p in parents:
      outgoing[p] += 1
    merged = []
    if spec.is_output:
      for j, block in enumerate(blocks):
        if (outgoing[j] == 0 and block.level == level and
            block.out_channels == in_channels):
          merged.append(j)
          outgoing[j] += 1
    rate = stochastic_depth_rate * (i + 1) / len(specs)
    blocks.append(PlannedBlock(len(blocks), level, spec.block_fn, filters,
                               _block_channels(spec.block_fn, filters),
                               in_channels, parents, tuple(merged),
                               spec.is_output, False, rate))
    outgoing.append(0)
  return NetworkPlan(family, scaling, tuple(blocks), min_level, max_level)


def check_input_size(plan: NetworkPlan, input_shape):
  """Raises ValueError unless fixed spatial sizes divide by 2**highest_level."""
  if len(input_shape) != 3:
    raise ValueError(f'input_shape must be (height, width, channels), got '
                     f'{tuple(input_shape)}.')
  divisor = 2 ** plan.highest_level
  for name, size in zip(('height', 'width'), input_shape[:2]):
    if size is not None and (size <= 0 or size % divisor):
      raise ValueError(
          f'input_shape {name} {size} is not divisible by 2**{plan.highest_level}'
          f' = {divisor} (the highest level of the network); use a multiple '
          f'of {divisor} or None.')

