"""The R[N]-SP[M] family of the SpineNet paper (Table 1) as data.

R[N]-SP[M] keeps N layers of a ResNet-like scale-decreased stem (levels 2..5)
and permutes M layers (levels 2..7). `ALLOCATIONS` holds Table 1's blocks per
level; `count_allocation` counts the same for a spec list, so searched or
hand-written specs can be checked against a row.

How the counting treats the stem: the blocks of a spec list are the two
level-2 bottleneck stem blocks this project always builds (offsets 0 and 1)
and the listed blocks. The stem blocks and the chain blocks (one input
offset, `specs.BlockSpec`) are the stem allocation ((2, 0, 0, 0) without
chain blocks, as in Table 1's R0-SP53 and SpineNet-49 rows); the other listed
blocks are the scale-permuted allocation. Only blocks that feed an output
level min_level..max_level count. So
SpineNet-49's 16 specs count 15 permuted blocks (1, 2, 4, 4, 2, 2): its
level-2 output block only serves min_level=2 and is not built for 3..7.

Layer names: a bottleneck block has 3 conv layers, a residual block 2, and
ResNet's naming adds 2 (the 7x7 stem conv and the classifier; ResNet-50 =
1 + 16 x 3 + 1). N + M = 3 x (stem + permuted blocks) + 2 holds exactly for
the four all-bottleneck R rows (17 blocks each, 53 layers); `count_layers`
counts block types too and gives 49 for SpineNet-49 (13 bottleneck and 4
residual blocks) and 53 for R0-SP53. N alone is 3 x stem blocks + 2 for
R35, R23 and R14; R0-SP53 counts its two stem blocks and the stem conv in M.

R0-SP53's specs are not published as code: the paper draws them in its
figure 4. `R0_SP53_BLOCK_SPECS` is one public reading of that figure
(/work/shared/DESIGN.md, "Architecture search"), all bottleneck, offsets
indexing all earlier blocks stem first, as SpineNet's specs do. Read from a
figure, so the exact connections are uncertain; what is checked (tests/
test_rsp_specs.py): its allocation equals Table 1's row, it has exactly one
output at each level 3..7, every offset points to an earlier block, every
intermediate block reads among the 5 blocks before it (the search rule
SpineNet-49 obeys too), every block feeds an output, and it builds.

Model id 'R0-SP53' (`specs.SEARCHED_MODELS`) builds it at SpineNet-49's
scaling, the paper's comparison: at 640 px 19,444,416 parameters and 72.8
GFLOPs (TF profiler) against SpineNet-49's 21,920,192 and 54.7 GFLOPs.
"""

import dataclasses

from spinenet_tf import specs as specs_lib

STEM_LEVELS = (2, 3, 4, 5)
PERMUTED_LEVELS = (2, 3, 4, 5, 6, 7)


@dataclasses.dataclass(frozen=True)
class Allocation:
  """Blocks per level: `stem` at levels 2..5, `permuted` at levels 2..7."""
  stem: tuple
  permuted: tuple

  def __post_init__(self):
    for name, levels in (('stem', STEM_LEVELS), ('permuted', PERMUTED_LEVELS)):
      counts = getattr(self, name)
      if (not isinstance(counts, tuple) or len(counts) != len(levels) or
          not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                  for c in counts)):
        raise ValueError(f'Allocation.{name} must be {len(levels)} counts '
                         f'>= 0 (levels {levels[0]}..{levels[-1]}), got '
                         f'{counts!r}.')

  @property
  def num_blocks(self):
    return sum(self.stem) + sum(self.permuted)


ALLOCATIONS = {
    'R35-SP18': Allocation((2, 3, 5, 1), (1, 1, 1, 1, 1, 1)),
    'R23-SP30': Allocation((2, 2, 2, 1), (1, 2, 4, 1, 1, 1)),
    'R14-SP39': Allocation((1, 1, 1, 1), (2, 3, 5, 1, 1, 1)),
    'R0-SP53': Allocation((2, 0, 0, 0), (1, 4, 6, 2, 1, 1)),
    'SpineNet-49': Allocation((2, 0, 0, 0), (1, 2, 4, 4, 2, 2)),
}


def allocation(name) -> Allocation:
  """Table 1's row `name` (any case); ValueError lists the valid names."""
  for known, row in ALLOCATIONS.items():
    if isinstance(name, str) and known.lower() == name.strip().lower():
      return row
  raise ValueError(f'Unknown allocation {name!r}; valid names: '
                   f'{", ".join(ALLOCATIONS)}.')


def _built_blocks(block_specs, min_level, max_level):
  """The planned blocks that feed an output (stem blocks included)."""
  block_specs = specs_lib.parse_block_specs(block_specs)
  if specs_lib.infer_family(block_specs) != specs_lib.SPINENET:
    raise ValueError('block specs: allocations count SpineNet blocks '
                     f'({specs_lib.BOTTLENECK}, {specs_lib.RESIDUAL}), not '
                     f'{specs_lib.MBCONV}.')
  plan = specs_lib.make_plan(block_specs, specs_lib.Scaling(), min_level,
                             max_level)
  used = plan.used_blocks()
  return [b for b in plan.blocks if b.index in used]


def count_allocation(block_specs, min_level=3, max_level=7) -> Allocation:
  """The `Allocation` of a SpineNet spec list (stem handling: module doc)."""
  blocks = _built_blocks(block_specs, min_level, max_level)
  stem = {b.index for b in blocks if b.is_stem or len(b.parents) == 1}
  for b in blocks:
    if b.index not in stem and b.level not in PERMUTED_LEVELS:
      raise ValueError(f'block {b.index - 2}: level {b.level} lies outside '
                       f'the allocation levels 2..7.')
  return Allocation(
      tuple(sum(b.index in stem and b.level == lv for b in blocks)
            for lv in STEM_LEVELS),
      tuple(sum(b.index not in stem and b.level == lv for b in blocks)
            for lv in PERMUTED_LEVELS))


def count_layers(block_specs, min_level=3, max_level=7) -> int:
  """Conv layers as the paper names networks: 3 per bottleneck, 2 per
  residual block (built blocks, stem included), plus 2."""
  return 2 + sum(3 if b.block_fn == specs_lib.BOTTLENECK else 2
                 for b in _built_blocks(block_specs, min_level, max_level))


_B = specs_lib.BOTTLENECK
R0_SP53_BLOCK_SPECS = specs_lib.specs_from_rows([
    (2, _B, (0, 1), False), (3, _B, (0, 1), False), (3, _B, (2, 3), False),
    (4, _B, (2, 4), False), (4, _B, (3, 5), False), (3, _B, (5, 6), False),
    (5, _B, (4, 7), False), (4, _B, (4, 8), False), (4, _B, (8, 9), False),
    (4, _B, (8, 10), False), (3, _B, (4, 10), True), (4, _B, (6, 7), True),
    (5, _B, (8, 13), True), (7, _B, (6, 9), True), (6, _B, (7, 9), True),
])
del _B

# Block specs of the searched model ids in `specs.SEARCHED_MODELS`.
BLOCK_SPECS = {'R0-SP53': R0_SP53_BLOCK_SPECS}
