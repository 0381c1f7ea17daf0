"""SpineNet's search space (paper section 3) as fixed-range integer choices.

A candidate is a spec list: a fixed scale-decreased stem (the R[N] part,
chain blocks at levels 2..5 after the two implied level-2 stem blocks), then
M scale-permuted blocks: M - 5 intermediate blocks, then 5 output blocks at
levels 3..7. Every parameter has a fixed number of choices, so Optuna's
distributions and an RNN controller can draw it; `decode` turns choices into
specs, `encode` inverts it.

The encoding:
- order: for each level in turn, which of the still free positions its blocks
  take (`place_L<level>`, a rank among the combinations). With one block per
  level this is a Lehmer code (the n-th element chooses among the n free
  positions); blocks of one level are interchangeable, so the paper's
  (M-5)! x 5! counts each order once per swap of equal-level blocks and this
  code counts it once.
- level adjustment (`offset_L<level>_<j>`): the j-th block of a level (in
  position order) moves by -1, 0, 1 or 2 levels. Moves that would leave
  2..7 are not offered (a level-7 block has 2 choices, level 2 and 6 have 3),
  so no code is rejected and none is clipped into a duplicate. Different codes
  can still give the same levels (a 4 moved up next to a 5 equals the swap);
  `encode` returns the code of the sorted matching, `size` counts distinct
  candidates.
- connections (`parents_block<i>`, i the block index as input_offsets count):
  a rank among the pairs of distinct parents, written in ascending order; an
  intermediate block picks among the last `window` blocks before it, an
  output block among `output_window` (default: all) earlier blocks.
- block type (`block_fn_block<i>`): 0 bottleneck, 1 residual; stem blocks
  stay bottleneck.

Every code decodes to specs `build_backbone` accepts. A block that no later
block reads and that `make_plan` cannot merge (level 2, or an output of its
level of another width) is not built: such candidates stay in the space as
smaller networks. Parameters with a single choice are left out.
"""

import itertools
import math

import numpy as np

from spinenet_tf import checks, rsp_specs
from spinenet_tf import specs as specs_lib

OUTPUT_LEVELS = (3, 4, 5, 6, 7)
LEVEL_OFFSETS = (-1, 0, 1, 2)
BLOCK_FNS = (specs_lib.BOTTLENECK, specs_lib.RESIDUAL)
LOWEST, HIGHEST = rsp_specs.PERMUTED_LEVELS[0], rsp_specs.PERMUTED_LEVELS[-1]
NUM_IMPLIED_STEM = 2


class InvalidCandidate(ValueError):
  """Specs that are not a point of the space, with the reason."""


def _rank(subset, n):
  """Lexicographic rank of a sorted subset of range(n)."""
  rank, start, k = 0, 0, len(subset)
  for i, x in enumerate(subset):
    rank += sum(math.comb(n - 1 - y, k - 1 - i) for y in range(start, x))
    start = x + 1
  return rank


def _unrank(rank, n, k):
  """The sorted k-subset of range(n) with lexicographic rank `rank`."""
  subset, x = [], 0
  for i in range(k):
    while rank >= math.comb(n - 1 - x, k - 1 - i):
      rank -= math.comb(n - 1 - x, k - 1 - i)
      x += 1
    subset.append(x)
    x += 1
  return subset


def _offsets(level):
  """The level moves that keep a block of `level` in 2..7."""
  return tuple(o for o in LEVEL_OFFSETS if LOWEST <= level + o <= HIGHEST)


def _resolve_allocation(allocation):
  if isinstance(allocation, str):
    allocation = rsp_specs.allocation(allocation)
  if not isinstance(allocation, rsp_specs.Allocation):
    raise ValueError(f'allocation must be a name ({", ".join(rsp_specs.ALLOCATIONS)}) '
                     f'or an rsp_specs.Allocation, got {allocation!r}.')
  stem, permuted = allocation.stem, allocation.permuted
  if sum(stem) < 2 or stem[0] < 1:
    raise ValueError(f'allocation.stem {stem}: the stem needs a level-2 '
                     'block and at least 2 blocks in all.')
  if any(stem[k] and not stem[k - 1] for k in range(1, len(stem))):
    raise ValueError(f'allocation.stem {stem}: a scale-decreased stem cannot '
                     'skip a level.')
  if not all(permuted[1:]):
    raise ValueError(f'allocation.permuted {permuted}: needs a block at each '
                     f'output level {OUTPUT_LEVELS}.')
  return allocation


class SearchSpace:
  """The space of one allocation.

  Args:
    allocation: a name of `rsp_specs.ALLOCATIONS` or an `Allocation`.
    window: intermediate blocks pick parents among the last `window` blocks.
    output_window: output blocks pick among the last `output_window` blocks;
      None for all earlier blocks (the paper).
    adjust_levels: search a level offset per intermediate block.
    adjust_block_types: search bottleneck or residual per block.
  """

  def __init__(self, allocation='SpineNet-49', window=5, output_window=None,
               adjust_levels=True, adjust_block_types=True):
    self.allocation = _resolve_allocation(allocation)
    self.window = checks.integer('window', window, 2)
    self.output_window = (None if output_window is None else
                          checks.integer('output_window', output_window, 2))
    self.adjust_levels = checks.boolean('adjust_levels', adjust_levels)
    self.adjust_block_types = checks.boolean('adjust_block_types',
                                             adjust_block_types)
    self.stem_specs, self._sources = self._stem()
    self.first = NUM_IMPLIED_STEM + len(self.stem_specs)
    permuted = self.allocation.permuted
    self.groups = tuple(  # (level, count) of the intermediate blocks
        (level, count - (level in OUTPUT_LEVELS))
        for level, count in zip(rsp_specs.PERMUTED_LEVELS, permuted)
        if count - (level in OUTPUT_LEVELS))
    self.num_intermediate = sum(c for _, c in self.groups)
    self.num_permuted = self.num_intermediate + len(OUTPUT_LEVELS)
    self._ranges = dict(self._all_parameters())

  def settings(self):
    """The arguments that define the space, as JSON keeps them."""
    return {'allocation': {'stem': list(self.allocation.stem),
                           'permuted': list(self.allocation.permuted)},
            'window': self.window, 'output_window': self.output_window,
            'adjust_levels': self.adjust_levels,
            'adjust_block_types': self.adjust_block_types}

  def _stem(self):
    """Chain specs of the stem after blocks 0 and 1, and the indices of the
    stem blocks later blocks may read (block 1 only if level 2 has 2)."""
    stem = self.allocation.stem
    sources = [0, 1] if stem[0] >= 2 else [0]
    levels = [2] * max(stem[0] - 2, 0) + [
        level for level, count in zip(rsp_specs.STEM_LEVELS[1:], stem[1:])
        for _ in range(count)]
    chain = []
    for level in levels:
      chain.append(specs_lib.BlockSpec(level, specs_lib.BOTTLENECK,
                                       (sources[-1],), False))
      sources.append(NUM_IMPLIED_STEM + len(chain) - 1)
    return tuple(chain), tuple(sources)

  def _window(self, position):
    """The blocks the scale-permuted block at `position` may read."""
    earlier = list(self._sources) + list(range(self.first,
                                               self.first + position))
    size = (self.window if position < self.num_intermediate
            else self.output_window)
    return earlier[-size:] if size else earlier

  def _all_parameters(self):
    free = self.num_intermediate
    for level, count in self.groups:
      yield f'place_L{level}', math.comb(free, count)
      free -= count
    for k, level in enumerate(OUTPUT_LEVELS):
      yield f'place_output_L{level}', len(OUTPUT_LEVELS) - k
    if self.adjust_levels:
      for level, count in self.groups:
        for j in range(count):
          yield f'offset_L{level}_{j}', len(_offsets(level))
    for position in range(self.num_permuted):
      yield (f'parents_block{self.first + position:02d}',
             math.comb(len(self._window(position)), 2))
    if self.adjust_block_types:
      for position in range(self.num_permuted):
        yield f'block_fn_block{self.first + position:02d}', len(BLOCK_FNS)

  def parameters(self):
    """[(name, number of choices)] in draw order; single choices left out."""
    return [(name, n) for name, n in self._ranges.items() if n > 1]

  def sample(self, rng):
    """Uniformly drawn choices; `rng` is a numpy Generator or a seed."""
    rng = np.random.default_rng(rng)
    return {name: int(rng.integers(n)) for name, n in self.parameters()}

  # ------------------------------------------------------------------------

  def _check_choices(self, choices):
    if not isinstance(choices, dict):
      raise ValueError(f'choices must be a dict of parameter -> int, got '
                       f'{choices!r}.')
    names = dict(self.parameters())
    missing = [n for n in names if n not in choices]
    unknown = sorted(set(choices) - set(names))
    if missing or unknown:
      raise ValueError(f'choices: missing parameter(s) {missing[:5]}, unknown '
                       f'parameter(s) {unknown[:5]}; see parameters().')
    for name, n in names.items():
      value = choices[name]
      if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
          or not 0 <= value < n):
        raise ValueError(f'choices[{name!r}] must be an integer in [0, {n - 1}]'
                         f', got {value!r}.')

  def decode(self, choices):
    """The spec tuple of `choices` (a dict of every parameter)."""
    self._check_choices(choices)
    get = lambda name: int(choices.get(name, 0))
    levels = [None] * self.num_permuted
    free = list(range(self.num_intermediate))
    for level, count in self.groups:
      taken = [free[i] for i in _unrank(get(f'place_L{level}'), len(free),
                                         count)]
      for j, position in enumerate(taken):
        offset = (_offsets(level)[get(f'offset_L{level}_{j}')]
                  if self.adjust_levels else 0)
        levels[position] = level + offset
      free = [p for p in free if p not in taken]
    free = list(range(self.num_intermediate, self.num_permuted))
    for level in OUTPUT_LEVELS:
      position = free.pop(get(f'place_output_L{level}'))
      levels[position] = level
    blocks = []
    for position, level in enumerate(levels):
      index = self.first + position
      window = self._window(position)
      pair = _unrank(get(f'parents_block{index:02d}'), len(window), 2)
      block_fn = BLOCK_FNS[get(f'block_fn_block{index:02d}')]
      blocks.append(specs_lib.BlockSpec(
          level, block_fn, tuple(window[i] for i in pair),
          position >= self.num_intermediate))
    return self.stem_specs + tuple(blocks)

  def encode(self, block_specs):
    """The choices that decode to `block_specs`; InvalidCandidate says why
    specs are not in the space. A level-2 output block that no block reads
    (SpineNet-49's, used only with min_level=2) is dropped first."""
    block_specs = list(specs_lib.parse_block_specs(block_specs))
    while (block_specs and block_specs[-1].is_output and
           block_specs[-1].level < OUTPUT_LEVELS[0]):
      block_specs.pop()
    stem = tuple(block_specs[:len(self.stem_specs)])
    if stem != self.stem_specs:
      raise InvalidCandidate(f'the first {len(self.stem_specs)} blocks must be '
                             f'the stem {self.stem_specs}, got {stem}.')
    blocks = block_specs[len(self.stem_specs):]
    if len(blocks) != self.num_permuted:
      raise InvalidCandidate(f'expected {self.num_permuted} scale-permuted '
                             f'blocks after the stem, got {len(blocks)}.')
    choices = {}
    for position, spec in enumerate(blocks):
      choices.update(self._encode_block(position, spec))
    choices.update(self._encode_levels(blocks))
    return {name: choices.get(name, 0) for name, _ in self.parameters()}

  def _encode_block(self, position, spec):
    index = self.first + position
    name = f'block {index - NUM_IMPLIED_STEM}'
    if spec.is_output != (position >= self.num_intermediate):
      raise InvalidCandidate(f'{name}: the first {self.num_intermediate} '
                             'scale-permuted blocks are intermediate, the '
                             f'last {len(OUTPUT_LEVELS)} outputs.')
    window = self._window(position)
    offsets = spec.input_offsets
    if (len(offsets) != 2 or offsets[0] >= offsets[1] or
        not set(offsets) <= set(window)):
      raise InvalidCandidate(f'{name}: input_offsets {list(offsets)} must be '
                             f'two ascending blocks of {window}.')
    if spec.block_fn not in BLOCK_FNS[:1 + self.adjust_block_types]:
      raise InvalidCandidate(f'{name}: block_fn {spec.block_fn!r} is not '
                             'searched (adjust_block_types=False).')
    return {f'parents_block{index:02d}': _rank([window.index(o) for o in offsets],
                                               len(window)),
            f'block_fn_block{index:02d}': BLOCK_FNS.index(spec.block_fn)}

  def _encode_levels(self, blocks):
    choices = {}
    outputs = [b.level for b in blocks[self.num_intermediate:]]
    if sorted(outputs) != list(OUTPUT_LEVELS):
      raise InvalidCandidate(f'output levels {outputs} must be a permutation '
                             f'of {OUTPUT_LEVELS}.')
    free = list(range(len(OUTPUT_LEVELS)))
    for level in OUTPUT_LEVELS:
      slot = outputs.index(level)
      choices[f'place_output_L{level}'] = free.index(slot)
      free.remove(slot)
    finals = [b.level for b in blocks[:self.num_intermediate]]
    bases = [level for level, count in self.groups for _ in range(count)]
    order = sorted(range(len(finals)), key=lambda p: (finals[p], p))
    assigned = {}  # base level -> positions, sorted matching
    for position, base in zip(order, bases):
      if finals[position] - base not in (
          _offsets(base) if self.adjust_levels else (0,)):
        raise InvalidCandidate(
            f'intermediate levels {finals} cannot come from the allocation\'s '
            f'{bases}' + (' with offsets in {-1, 0, 1, 2}'
                          if self.adjust_levels else ' (adjust_levels=False)')
            + '.')
      assigned.setdefault(base, []).append(position)
    free = list(range(self.num_intermediate))
    for level, _ in self.groups:
      taken = sorted(assigned[level])
      choices[f'place_L{level}'] = _rank([free.index(p) for p in taken],
                                         len(free))
      for j, position in enumerate(taken):
        choices[f'offset_L{level}_{j}'] = _offsets(level).index(
            finals[position] - level)
      free = [p for p in free if p not in taken]
    return choices

  # ------------------------------------------------------------------------

  def num_codes(self):
    """Number of distinct choice dicts (every one decodes)."""
    return math.prod(self._ranges.values())

  def level_sequences(self):
    """Number of distinct intermediate level sequences."""
    k = self.num_intermediate
    if not self.adjust_levels:
      return _multinomial([c for _, c in self.groups])
    bases = [level for level, count in self.groups for _ in range(count)]
    total = 0
    for finals in itertools.combinations_with_replacement(
        range(LOWEST, HIGHEST + 1), k):
      if all(f - b in _offsets(b) for f, b in zip(finals, bases)):
        total += _multinomial([finals.count(lv) for lv in set(finals)])
    return total

  def size(self):
    """Exact number of distinct candidates (spec lists)."""
    return self.num_codes() // self._level_codes() * self.level_sequences()

  def _level_codes(self):
    return self._product('place_L', 'offset_')

  def _product(self, *prefixes):
    return math.prod(n for name, n in self._ranges.items()
                     if name.startswith(prefixes))

  def describe(self):
    """A short text with the counts per part of the space."""
    k, m = self.num_intermediate, self.num_permuted
    pairs = self._product('parents_')
    lines = [
        f'stem: {NUM_IMPLIED_STEM} implied + {len(self.stem_specs)} chain '
        f'blocks; scale-permuted: {k} intermediate + {len(OUTPUT_LEVELS)} '
        'output blocks',
        f'orders: paper {k}! x 5! = {math.factorial(k) * 120:,}; distinct '
        f'{_multinomial([c for _, c in self.groups]) * 120:,}',
        f'connections (window {self.window}, output window '
        f'{self.output_window or "all"}): {pairs:,}',
    ]
    if self.adjust_levels:
      lines.append(f'level offsets: {self._product("offset_"):,} codes '
                   f'(paper 4^{k} = {4 ** k:,}); distinct level sequences '
                   f'{self.level_sequences():,}')
    if self.adjust_block_types:
      lines.append(f'block types: 2^{m} = {2 ** m:,}')
    lines.append(f'codes: {self.num_codes():.3e}; distinct candidates: '
                 f'{self.size():.3e}')
    return '\n'.join(lines)


def _multinomial(counts):
  return math.factorial(sum(counts)) // math.prod(math.factorial(c)
                                                  for c in counts)
