"""Block spec parsing, YAML loading and every validation error."""
import pytest

import spinenet_tf
from spinenet_tf import specs

B, R = specs.BOTTLENECK, specs.RESIDUAL


def _with(index, **changes):
  rows = [s.to_dict() for s in specs.SPINENET_BLOCK_SPECS]
  rows[index].update(changes)
  return rows


def test_model_id_spellings_resolve():
  assert specs.resolve_model_id('SpineNet-49') == '49'
  assert specs.resolve_model_id('49s') == '49S'
  assert specs.resolve_model_id('mobile-49xs') == 'mobile-49XS'
  assert specs.resolve_model_id('spinenet_mobile_49') == 'mobile-49'
  # Before: refused, since only one '-' or '_' separator was taken.
  assert specs.resolve_model_id('SpineNet Mobile-49S') == 'mobile-49S'
  assert specs.resolve_model_id('mobile49xs') == 'mobile-49XS'
  assert specs.resolve_model_id(' 143l ') == '143L'
  assert specs.resolve_model_id(190) == '190'


def test_unknown_model_id_lists_valid_ids(tmp_path):
  with pytest.raises(ValueError) as err:
    spinenet_tf.build_backbone('50')
  assert "'50'" in str(err.value)
  for model_id in specs.MODEL_IDS:
    assert model_id in str(err.value)
  with pytest.raises(ValueError, match=r"'mobile-49SX' \(did you mean "
                     r"'mobile-49S'\?\)"):
    spinenet_tf.build_backbone('mobile-49SX')
  with pytest.raises(ValueError, match="model_id True;"):
    specs.resolve_model_id(True)
  # A spec file without the .yaml suffix is named as one.
  path = tmp_path / 'my_specs.txt'
  path.write_text('block_specs: []\n')
  with pytest.raises(ValueError, match=r'my_specs.txt\' \(a block spec file '
                     r'must end with .yaml or .yml\)'):
    spinenet_tf.build_backbone(str(path))


@pytest.mark.parametrize('rows, message', [
    (_with(3, block_fn='dense'), r"block 3: unknown block_fn 'dense'"),
    (_with(5, level=9), r'block 5: level 9 out of range \[1, 7\]'),
    (_with(4, input_offsets=[2, 6]), r'block 4: input_offsets\[1\] = 6 points forward'),
    (_with(4, input_offsets=[-1, 2]), r'block 4: input_offsets\[0\] = -1 is negative'),
    (_with(12, level=4), r'block 12: is_output duplicates output level 4'),
    (_with(11, is_output=False), r'level 3 is requested .* no block has is_output at level 3'),
    (_with(2, level='4'), r'block 2: field level must be an integer'),
    (_with(2, input_offsets=[1, 2, 3]), r'block 2: field input_offsets must be one integer \(a chain block\) or two integers'),
    (_with(2, is_output='yes'), r'block 2: field is_output must be true or false'),
])
def test_validation_names_block_and_field(rows, message):
  with pytest.raises(ValueError, match=message):
    spinenet_tf.build_backbone(rows, (None, None, 3))


def test_unknown_field_and_missing_field():
  rows = _with(0, kernel=3)
  with pytest.raises(ValueError, match=r"block 0: unknown field\(s\) \['kernel'\]"):
    specs.parse_block_specs(rows)
  rows = [s.to_dict() for s in specs.SPINENET_BLOCK_SPECS]
  del rows[1]['level']
  with pytest.raises(ValueError, match=r"block 1: missing field\(s\) \['level'\]"):
    specs.parse_block_specs(rows)


def test_mobile_block_in_spinenet_family_is_rejected():
  rows = _with(0, block_fn='mbconv')
  with pytest.raises(ValueError, match='block 0: unknown block_fn'):
    spinenet_tf.build_backbone(rows, scaling='49')


@pytest.mark.parametrize('size', [100, 200, 320])
def test_fixed_input_size_must_divide_by_highest_level(size):
  with pytest.raises(ValueError, match=f'height {size} is not divisible by 2\\*\\*7 = 128'):
    spinenet_tf.build_backbone('49S', (size, 256, 3))


def test_level_range_errors():
  with pytest.raises(ValueError, match='min_level \\(5\\) must not exceed max_level \\(4\\)'):
    spinenet_tf.build_backbone('49S', min_level=5, max_level=4)
  with pytest.raises(ValueError, match='level 1 is requested'):
    spinenet_tf.build_backbone('49S', min_level=1, max_level=7)


def test_scaling_errors():
  with pytest.raises(ValueError,
                     match=r'filter_size_scale must be a number in \(0, inf\]'):
    spinenet_tf.build_backbone('49', scaling=dict(filter_size_scale=0.0))
  with pytest.raises(ValueError, match='block_repeats must be an integer >= 1'):
    spinenet_tf.build_backbone('49', scaling=dict(block_repeats=0))
  with pytest.raises(ValueError, match=r"unknown scaling field\(s\) \['width'\]"):
    spinenet_tf.build_backbone('49', scaling=dict(width=2))


def test_yaml_specs_round_trip(tmp_path):
  path = tmp_path / 'custom.yaml'
  path.write_text(
      'scaling: {endpoints_num_filters: 32, filter_size_scale: 0.25}\n'
      'block_specs:\n' + ''.join(
          f'  - [{s.level}, {s.block_fn}, [{s.input_offsets[0]}, '
          f'{s.input_offsets[1]}], {str(s.is_output).lower()}]\n'
          for s in specs.SPINENET_BLOCK_SPECS))
  block_specs, scaling = specs.load_specs_yaml(str(path))
  assert block_specs == specs.SPINENET_BLOCK_SPECS
  assert scaling.filter_size_scale == 0.25
  model = spinenet_tf.build_backbone(str(path), (128, 128, 3))
  assert model.output_specs['3'] == (None, 16, 16, 32)


def test_yaml_errors_name_the_file(tmp_path):
  bad = tmp_path / 'bad.yaml'
  bad.write_text('block_specs:\n  - {level: 2, block_fn: bottleneck, input_offsets: [0, 5], is_output: false}\n')
  with pytest.raises(ValueError, match=r'bad.yaml.*block 0: input_offsets\[1\] = 5 points forward'):
    spinenet_tf.build_backbone(str(bad))
  with pytest.raises(FileNotFoundError, match='missing.yaml: no such file'):
    spinenet_tf.build_backbone(str(tmp_path / 'missing.yaml'))
  (tmp_path / 'top.yaml').write_text('blocks: []\n')
  with pytest.raises(ValueError, match='block_specs'):
    spinenet_tf.build_backbone(str(tmp_path / 'top.yaml'))


def test_plan_output_merges_follow_the_published_wiring():
  plan = specs.make_plan(specs.SPINENET_BLOCK_SPECS, specs.SCALING['49'])
  merged = {b.index: b.merged for b in plan.blocks if b.merged}
  # Block 17, the level-2 output, lies outside levels 3-7 and is pruned.
  # Only the level-5 output finds an unconnected block of its level and width.
  assert merged == {14: (11,)}
  assert 17 not in plan.used_blocks()
  assert plan.used_blocks() == set(range(17))


def test_stochastic_depth_rate_grows_linearly():
  plan = specs.make_plan(specs.SPINENET_BLOCK_SPECS, specs.SCALING['49'],
                         stochastic_depth_rate=0.2)
  rates = [b.stochastic_depth_rate for b in plan.blocks]
  assert rates[:2] == [0.0, 0.0]
  assert rates[2] == pytest.approx(0.2 / 16)
  assert rates[-1] == pytest.approx(0.2)
