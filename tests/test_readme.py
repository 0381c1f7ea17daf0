"""README's Python code blocks run as written, in order, in one namespace.

The blocks read two files a user would have: `my_spinenet.yaml` (a spec
file; the README shows its format) and `spinenet49.weights.h5`, which this
test makes by running the README's own convert command on a Model Garden
checkpoint.
"""
import os
import re
import shlex
import subprocess
import sys

import pytest

from spinenet_tf import specs
from tests.reference import build_reference, save_reference_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(language):
  text = open(os.path.join(ROOT, 'README.md')).read()
  return re.findall(rf'```{language}\n(.*?)```', text, flags=re.S)


def _convert_command():
  for block in _blocks('bash'):
    command = block.replace('\\\n', ' ')
    if 'scripts/convert_checkpoint.py' in command:
      return shlex.split(command)
  raise AssertionError('README shows no convert_checkpoint.py command')


def _write_spec_file(path):
  rows = ''.join(f'  - [{s.level}, {s.block_fn}, [{s.input_offsets[0]}, '
                 f'{s.input_offsets[1]}], {str(s.is_output).lower()}]\n'
                 for s in specs.SPINENET_BLOCK_SPECS)
  with open(path, 'w') as f:
    f.write('scaling: {endpoints_num_filters: 128, filter_size_scale: 0.5}\n'
            'block_specs:\n' + rows)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _write_spec_file('my_spinenet.yaml')
  checkpoint_dir = tmp_path / 'path' / 'to' / 'model_garden_ckpt'
  save_reference_checkpoint(build_reference('49', 640), checkpoint_dir)
  command = _convert_command()
  assert command[:2] == ['python', 'scripts/convert_checkpoint.py']
  subprocess.run([sys.executable, os.path.join(ROOT, command[1])] + command[2:],
                 check=True)
  assert os.path.exists('spinenet49.weights.h5')
  namespace = {}
  blocks = _blocks('python')
  assert len(blocks) >= 4
  for block in blocks:
    exec(compile(block, 'README.md', 'exec'), namespace)  # noqa: S102
  assert tuple(namespace['features']['7'].shape) == (2, 5, 5, 256)
  assert tuple(namespace['logits'].shape) == (1, 5089)
