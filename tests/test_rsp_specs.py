"""R[N]-SP[M]: Table 1 allocations, R0-SP53 specs and its model id."""
import re

import numpy as np
import pytest

import spinenet_tf
from spinenet_tf import rsp_specs, specs
from spinenet_tf.viz import draw_architecture
from spinenet_tf.viz.architecture import _title

R0 = rsp_specs.R0_SP53_BLOCK_SPECS
TINY = dict(filter_size_scale=0.25, endpoints_num_filters=16)


def test_r0_sp53_allocation_equals_table_1():
  assert rsp_specs.count_allocation(R0) == rsp_specs.Allocation(
      (2, 0, 0, 0), (1, 4, 6, 2, 1, 1))
  assert rsp_specs.count_allocation(R0) == rsp_specs.allocation('R0-SP53')


def test_spinenet_49_allocation_equals_table_1():
  assert (rsp_specs.count_allocation(specs.SPINENET_BLOCK_SPECS) ==
          rsp_specs.allocation('spinenet-49') ==
          rsp_specs.Allocation((2, 0, 0, 0), (1, 2, 4, 4, 2, 2)))
  # Its level-2 output block is built, and counted, only for min_level=2.
  assert rsp_specs.count_allocation(
      specs.SPINENET_BLOCK_SPECS, min_level=2).permuted == (2, 2, 4, 4, 2, 2)


@pytest.mark.parametrize('name', ['R35-SP18', 'R23-SP30', 'R14-SP39',
                                  'R0-SP53'])
def test_layers_in_the_name_are_three_per_block_plus_two(name):
  n, m = map(int, re.fullmatch(r'R(\d+)-SP(\d+)', name).groups())
  assert 3 * rsp_specs.allocation(name).num_blocks + 2 == n + m == 53


def test_count_layers_counts_residual_blocks_as_two():
  assert rsp_specs.count_layers(R0) == 53
  assert rsp_specs.count_layers(specs.SPINENET_BLOCK_SPECS) == 49


def test_r0_sp53_wiring():
  assert len(R0) == 15
  assert sorted(s.level for s in R0 if s.is_output) == [3, 4, 5, 6, 7]
  for i, spec in enumerate(R0):
    assert all(0 <= o < 2 + i for o in spec.input_offsets), i
    if not spec.is_output:  # the search's rule: one of the last 5 blocks
      assert all(o >= 2 + i - 5 for o in spec.input_offsets), i
  plan = specs.make_plan(R0, specs.SCALING['49'])
  assert plan.used_blocks() == set(range(17))  # every block feeds an output
  assert [b.index for b in plan.blocks if b.merged] == [13]  # block 11 -> P4


def test_r0_sp53_model_id_builds_levels_3_to_7():
  model = spinenet_tf.build_backbone('r0-sp53', (128, 128, 3), **TINY)
  assert model.block_specs == R0
  outputs = model(np.zeros((1, 128, 128, 3), 'float32'), training=False)
  assert {k: tuple(v.shape) for k, v in outputs.items()} == {
      '3': (1, 16, 16, 16), '4': (1, 8, 8, 16), '5': (1, 4, 4, 16),
      '6': (1, 2, 2, 16), '7': (1, 1, 1, 16)}


def test_r0_sp53_at_spinenet_49_scaling_parameter_count():
  model = spinenet_tf.build_backbone('R0_SP53', (640, 640, 3))
  assert model.scaling == specs.SCALING['49']
  assert specs.model_scaling('spinenet-r0-sp53') == specs.SCALING['49']
  assert model.count_params() == 19_444_416  # SpineNet-49: 21,920,192


def test_r0_sp53_in_retinanet():
  model = spinenet_tf.build_retinanet(
      'r0-sp53', num_classes=3, input_shape=(128, 128, 3),
      backbone_kwargs=TINY)
  assert model.backbone.block_specs == R0
  assert model.backbone.output_specs['7'] == (None, 1, 1, 16)


def test_searched_id_is_listed_but_kept_out_of_model_garden_ids():
  assert 'R0-SP53' not in specs.MODEL_IDS  # Model Garden has no twin
  assert set(rsp_specs.BLOCK_SPECS) == set(specs.SEARCHED_MODELS)
  with pytest.raises(ValueError, match=r"'r1-sp52'.*R0-SP53"):
    spinenet_tf.build_backbone('r1-sp52')


def test_picture_of_r0_sp53(tmp_path):
  assert _title('r0-sp53') == 'R0-SP53'
  path = str(tmp_path / 'r0.png')
  assert draw_architecture('r0-sp53', path) == path


def test_bad_allocation_name_lists_valid_names():
  with pytest.raises(ValueError) as err:
    rsp_specs.allocation('R50-SP0')
  assert "'R50-SP0'" in str(err.value)
  for name in rsp_specs.ALLOCATIONS:
    assert name in str(err.value)


@pytest.mark.parametrize('stem, permuted, field', [
    ((2, 0, 0), (1, 4, 6, 2, 1, 1), 'stem'),
    ((2, 0, 0, 0), (1, 4, 6, 2, 1, -1), 'permuted'),
    ((2, 0, 0, 0), [1, 4, 6, 2, 1, 1], 'permuted'),
])
def test_bad_allocation_names_field(stem, permuted, field):
  with pytest.raises(ValueError, match=f'Allocation.{field} must be'):
    rsp_specs.Allocation(stem, permuted)


def test_count_refuses_mobile_and_level_1_blocks():
  with pytest.raises(ValueError, match='allocations count SpineNet blocks'):
    rsp_specs.count_allocation(specs.SPINENET_MOBILE_BLOCK_SPECS)
  rows = [s.to_dict() for s in R0]
  rows[0]['level'] = 1
  with pytest.raises(ValueError, match='block 0: level 1 lies outside'):
    rsp_specs.count_allocation(rows)
