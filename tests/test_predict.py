"""scripts/export.py and scripts/predict.py end to end, in fresh processes:
YAML config + .weights.h5 -> SavedModel -> annotated PNGs and COCO JSON,
and the same predictions straight from the checkpoint."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.test_export import DETECTOR, random_pixels, tiny_detector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(name, *args):
  run = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', name), *args],
      capture_output=True, text=True, timeout=600, cwd=ROOT,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert run.returncode == 0, run.stderr[-3000:]
  return run


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
  """A config, its weights, three images (one corrupt) and an export."""
  directory = tmp_path_factory.mktemp('predict')
  config = {'task': 'detection', 'model': {
      'backbone': DETECTOR['backbone_model_id'],
      'input_size': DETECTOR['input_shape'][0],
      'num_classes': DETECTOR['num_classes'],
      'num_convs': DETECTOR['num_convs'],
      'num_filters': DETECTOR['num_filters']}}
  (directory / 'config.yaml').write_text(yaml.safe_dump(config))
  tiny_detector().save_weights(str(directory / 'model.weights.h5'))
  images = directory / 'images'
  images.mkdir()
  Image.fromarray(random_pixels((90, 120, 3), 1)).save(
      images / '000000000042.png')
  Image.fromarray(random_pixels((200, 150, 3), 2)).save(
      images / '000000000007.jpg', quality=95)
  (images / '000000000009.jpg').write_bytes(b'not an image')
  (images / 'notes.txt').write_text('not an image either')
  _script('export.py', f'--config_file={directory / "config.yaml"}',
          f'--checkpoint={directory / "model.weights.h5"}',
          f'--export_dir={directory / "export"}')
  return directory


def _predict(workspace, output, *model_args):
  run = _script('predict.py', *model_args,
                f'--input={workspace / "images"}',
                f'--output_dir={workspace / output}', '--score_threshold=0.2',
                '--batch_size=2')
  with open(workspace / output / 'detections.json') as f:
    detections = json.load(f)
  with open(workspace / output / 'images.json') as f:
    images = json.load(f)
  return run, detections, images


def test_export_script_writes_the_config(workspace):
  export = workspace / 'export'
  assert (export / 'saved_model.pb').exists()
  config = yaml.safe_load((export / 'assets.extra' /
                           'model_config.yaml').read_text())
  assert config['model']['backbone'] == 'mobile-49XS'


def test_predict_saved_model_and_checkpoint(workspace):
  run, detections, images = _predict(
      workspace, 'from_export', f'--saved_model={workspace / "export"}')
  assert '1 of 3 files could not be decoded' in run.stderr
  assert images == [
      {'id': 7, 'file_name': '000000000007.jpg', 'height': 200, 'width': 150},
      {'id': 42, 'file_name': '000000000042.png', 'height': 90, 'width': 120}]
  assert {d['image_id'] for d in detections} == {7, 42}
  for d in detections:
    assert set(d) == {'image_id', 'category_id', 'bbox', 'score'}
    assert 1 <= d['category_id'] < 4 and 0.05 < d['score'] <= 1
    x, y, w, h = d['bbox']
    size = next(i for i in images if i['id'] == d['image_id'])
    assert 0 <= x <= x + w <= size['width'] + 1e-3
    assert 0 <= y <= y + h <= size['height'] + 1e-3
  for name, source in (('000000000042.png', '000000000042.png'),
                       ('000000000007.png', '000000000007.jpg')):
    drawn = np.asarray(Image.open(workspace / 'from_export' / name))
    original = np.asarray(Image.open(workspace / 'images' / source))
    assert drawn.shape == original.shape
    assert (drawn != original).any()  # boxes were drawn

  _, from_checkpoint, _ = _predict(
      workspace, 'from_checkpoint',
      f'--config_file={workspace / "config.yaml"}',
      f'--checkpoint={workspace / "model.weights.h5"}')
  assert len(from_checkpoint) == len(detections)
  for a, b in zip(from_checkpoint, detections):
    assert (a['image_id'], a['category_id']) == (b['image_id'],
                                                 b['category_id'])
    np.testing.assert_allclose(a['bbox'], b['bbox'], atol=1e-3)
    np.testing.assert_allclose(a['score'], b['score'], atol=1e-5)
