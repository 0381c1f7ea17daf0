"""The search space: counts, round trips, every draw builds."""

import itertools
import math

import numpy as np
import pytest

import spinenet_tf
from spinenet_tf import rsp_specs, specs
from spinenet_tf.search import InvalidCandidate, SearchSpace
from spinenet_tf.viz.architecture import draw_architecture

TINY = dict(filter_size_scale=0.125, endpoints_num_filters=8)


def _enumerate(space):
  names = [n for n, _ in space.parameters()]
  for values in itertools.product(*(range(n) for _, n in space.parameters())):
    yield dict(zip(names, values))


def test_size_equals_brute_force_count():
  # Intermediate levels 4 and 5 with offsets overlap, so codes repeat.
  space = SearchSpace(rsp_specs.Allocation((2, 0, 0, 0), (0, 1, 2, 2, 1, 1)),
                      window=3, output_window=2, adjust_block_types=False)
  decoded = [space.decode(c) for c in _enumerate(space)]
  assert len(decoded) == space.num_codes() == 2 * 16 * 120 * 3
  assert len(set(decoded)) == space.size() < len(decoded)
  for d in set(decoded):
    assert space.decode(space.encode(d)) == d


def test_spinenet49_counts():
  space = SearchSpace('SpineNet-49')
  text = space.describe()
  print(text)
  # 10 intermediate blocks at levels 2,3,4,4,4,5,5,5,6,7, outputs 3..7.
  assert space.num_intermediate == 10 and space.num_permuted == 15
  assert f'10! x 5! = {math.factorial(10) * 120:,}' in text
  distinct_orders = math.factorial(10) // (6 * 6) * 120
  assert f'distinct {distinct_orders:,}' in text
  ranges = dict(space.parameters())
  assert math.prod(ranges.values()) == space.num_codes()
  offsets = [n for name, n in ranges.items() if name.startswith('offset_')]
  assert sorted(offsets) == [2, 3, 3] + [4] * 7  # L7, L2 and L6 at the edges
  # Outputs read every earlier block: the last one chooses among 16.
  assert ranges['parents_block16'] == math.comb(16, 2)
  assert 'parents_block02' not in ranges  # a single choice: left out
  plain = SearchSpace('SpineNet-49', adjust_levels=False)
  assert plain.size() == plain.num_codes() == (
      distinct_orders * space._product('parents_') * 2 ** 15)


@pytest.mark.parametrize('allocation, block_specs, expected', [
    ('SpineNet-49', specs.SPINENET_BLOCK_SPECS, specs.SPINENET_BLOCK_SPECS[:15]),
    ('R0-SP53', rsp_specs.R0_SP53_BLOCK_SPECS, rsp_specs.R0_SP53_BLOCK_SPECS),
])
def test_published_networks_are_points_of_the_space(allocation, block_specs,
                                                    expected):
  space = SearchSpace(allocation)
  choices = space.encode(block_specs)
  assert space.decode(choices) == expected
  assert space.encode(expected) == choices
  # SpineNet-49's dropped level-2 output serves only min_level=2: the plan
  # for levels 3..7 is the same without it.
  assert (specs.make_plan(expected, specs.Scaling()).blocks ==
          specs.make_plan(block_specs, specs.Scaling()).blocks[:len(expected) + 2])


@pytest.mark.parametrize('allocation', list(rsp_specs.ALLOCATIONS))
def test_encode_inverts_decode(allocation):
  plain = SearchSpace(allocation, adjust_levels=False)
  adjusted = SearchSpace(allocation)
  rng = np.random.default_rng(0)
  for _ in range(50):
    choices = plain.sample(rng)
    assert plain.encode(plain.decode(choices)) == choices
    # With level offsets several codes give one spec list: encode picks one.
    decoded = adjusted.decode(adjusted.sample(rng))
    code = adjusted.encode(decoded)
    assert adjusted.decode(code) == decoded
    assert adjusted.encode(adjusted.decode(code)) == code


def _check_endpoints(model):
  assert sorted(model.output_specs) == ['3', '4', '5', '6', '7']
  for level, shape in model.output_specs.items():
    assert shape == (None, 128 >> int(level), 128 >> int(level), 8)


@pytest.mark.parametrize('allocation, seed', [
    ('R35-SP18', 0), ('R14-SP39', 1), ('SpineNet-49', 2)])
def test_sampled_candidates_build(allocation, seed):
  space = SearchSpace(allocation)
  candidate = space.decode(space.sample(seed))
  model = spinenet_tf.build_backbone(candidate, (128, 128, 3), **TINY)
  _check_endpoints(model)
  # R14's stem has one level-2 block: the second implied one is not built.
  names = {layer.name for layer in model.layers}
  assert ('block01' in names) == (allocation != 'R14-SP39')


@pytest.mark.parametrize('allocation', ['R35-SP18', 'R14-SP39'])
def test_candidates_have_the_allocation(allocation):
  # Without level offsets every fully built candidate counts as its row.
  space = SearchSpace(allocation, adjust_levels=False)
  counted = 0
  for seed in range(20):
    candidate = space.decode(space.sample(seed))
    plan = specs.make_plan(candidate, specs.Scaling())
    if plan.used_blocks() == set(range(len(plan.blocks))) - (
        {1} if allocation == 'R14-SP39' else set()):
      assert rsp_specs.count_allocation(candidate) == space.allocation
      counted += 1
  assert counted >= 5


def test_candidate_yaml_builds_and_draws(tmp_path):
  space = SearchSpace('R23-SP30')
  candidate = space.decode(space.sample(7))
  path = specs.write_specs_yaml(candidate, str(tmp_path / 'best.yaml'),
                                specs.Scaling(**TINY))
  assert specs.load_specs_yaml(path) == (candidate, specs.Scaling(**TINY))
  _check_endpoints(spinenet_tf.build_backbone(path, (128, 128, 3)))
  picture = draw_architecture(path, str(tmp_path / 'best.png'))
  assert (tmp_path / 'best.png').stat().st_size > 10_000 and picture


def test_stem_is_chain_blocks():
  space = SearchSpace('R35-SP18')
  stem = space.stem_specs
  assert [s.level for s in stem] == [3] * 3 + [4] * 5 + [5]
  assert [s.input_offsets for s in stem] == [(i,) for i in range(1, 10)]
  plan = specs.make_plan(space.decode(space.sample(0)), specs.Scaling())
  assert [b.in_channels for b in plan.blocks[2:5]] == [256, 512, 512]


@pytest.mark.parametrize('row, message', [
    ((3, 'bottleneck', (1,), True), 'block 0: a chain block .* cannot have is_output'),
    ((4, 'bottleneck', (1,), False), r'block 0: a chain block .* level 4 reads block 1 at level 2'),
    ((2, 'bottleneck', (1, 2, 0), False), 'block 0: field input_offsets must be one integer'),
])
def test_bad_chain_blocks(row, message):
  rows = [row] + list(specs.SPINENET_BLOCK_SPECS)
  with pytest.raises(ValueError, match=message):
    specs.make_plan(rows, specs.Scaling())


def test_switches_remove_their_parameters():
  full = dict(SearchSpace('R0-SP53').parameters())
  no_levels = dict(SearchSpace('R0-SP53', adjust_levels=False).parameters())
  no_types = SearchSpace('R0-SP53', adjust_block_types=False)
  assert {n for n in full if n.startswith('offset_')} == set(full) - set(no_levels)
  assert not any(n.startswith('block_fn_') for n in dict(no_types.parameters()))
  assert {s.block_fn for s in no_types.decode(no_types.sample(0))} == {'bottleneck'}
  windowed = dict(SearchSpace('R0-SP53', output_window=3).parameters())
  assert windowed['parents_block16'] == 3 and full['parents_block16'] == 120


@pytest.mark.parametrize('kwargs, message', [
    (dict(allocation='R50'), "Unknown allocation 'R50'"),
    (dict(allocation=(2, 0, 0, 0)), 'allocation must be a name'),
    (dict(allocation=rsp_specs.Allocation((2, 0, 0, 0), (1, 1, 0, 1, 1, 1))),
     'allocation.permuted .* output level'),
    (dict(allocation=rsp_specs.Allocation((2, 0, 1, 0), (1, 1, 1, 1, 1, 1))),
     'allocation.stem .* skip a level'),
    (dict(window=1), 'window must be an integer >= 2'),
    (dict(output_window=1), 'output_window must be an integer >= 2'),
    (dict(adjust_levels='yes'), 'adjust_levels must be true or false'),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    SearchSpace(**kwargs)


def test_bad_choices_and_foreign_specs():
  space = SearchSpace('R0-SP53')
  choices = space.sample(0)
  with pytest.raises(ValueError, match=r"missing parameter\(s\) \['place_L2'\]"):
    space.decode({k: v for k, v in choices.items() if k != 'place_L2'})
  with pytest.raises(ValueError, match=r"choices\['parents_block16'\] must be an "
                                       r'integer in \[0, 119\], got 120'):
    space.decode({**choices, 'parents_block16': 120})
  with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['extra'\]"):
    space.decode({**choices, 'extra': 0})
  with pytest.raises(InvalidCandidate, match='intermediate levels'):
    SearchSpace('R0-SP53', adjust_levels=False).encode(
        specs.SPINENET_BLOCK_SPECS)
  with pytest.raises(InvalidCandidate, match='the first 9 blocks must be the stem'):
    SearchSpace('R35-SP18').encode(rsp_specs.R0_SP53_BLOCK_SPECS)
