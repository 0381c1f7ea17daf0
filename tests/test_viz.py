"""The architecture picture: PNG files for ids, YAML specs and the script."""
import os
import subprocess
import sys

import pytest
import yaml
from PIL import Image

from spinenet_tf import specs
from spinenet_tf.viz import draw_architecture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_png(path):
  assert os.path.getsize(path) > 10_000
  with Image.open(path) as image:
    assert image.format == 'PNG'
    width, height = image.size
  assert 1000 <= width <= 3000
  assert 500 <= height <= 1500
  assert width > height


@pytest.mark.parametrize('model_id', ['49', 'mobile-49'])
def test_model_id_picture(model_id, tmp_path):
  path = str(tmp_path / f'{model_id}.png')
  assert draw_architecture(model_id, path) == path
  _check_png(path)


def test_yaml_spec_file_picture(tmp_path):
  rows = [s.to_dict() for s in specs.SPINENET_BLOCK_SPECS]
  rows[1]['block_fn'] = specs.BOTTLENECK
  rows[6]['level'] = 6
  spec_file = tmp_path / 'custom.yaml'
  spec_file.write_text(yaml.safe_dump(
      {'block_specs': rows, 'scaling': {'filter_size_scale': 0.5}}))
  path = draw_architecture(str(spec_file), str(tmp_path / 'out' / 'c.png'),
                           title='custom')
  _check_png(path)


def test_invalid_model_id_raises(tmp_path):
  with pytest.raises(ValueError, match="'50'"):
    draw_architecture('50', str(tmp_path / 'x.png'))
  assert not (tmp_path / 'x.png').exists()


def test_script_writes_png(tmp_path):
  path = tmp_path / 'xs.png'
  subprocess.run([sys.executable, 'scripts/draw_architecture.py',
                  '--model_id', 'mobile-49XS', '--output', str(path)],
                 cwd=ROOT, check=True, capture_output=True)
  _check_png(str(path))
