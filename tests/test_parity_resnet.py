"""Model Garden's ResNet, FPN and RetinaNet-ResNet-FPN checkpoints load into
ours and reproduce Model Garden's outputs (random weights and biases,
randomised BN statistics, inference mode, within 1e-4)."""
import subprocess
import sys

import numpy as np
import pytest

from spinenet_tf.export.model_garden_checkpoint import convert_checkpoint
from spinenet_tf.models import resnet
from spinenet_tf.models.retinanet import build_retinanet
from benchmarks.model_garden import (
    build_reference_resnet, build_reference_resnet_classifier,
    build_reference_retinanet_fpn, randomize_batch_norm, save_reference_model)

SIZE, MULTIPLIER, FILTERS, CLASSES = 64, 0.25, 16, 4


def _randomize(model):
  """BN statistics and conv biases (zero at init) that affect the output."""
  randomize_batch_norm(model)
  rng = np.random.default_rng(3)
  for v in model.weights:
    if v.name.endswith('bias:0') or v.name == 'bias':
      v.assign(rng.normal(0.0, 0.1, v.shape))


def _images(seed=1):
  return np.random.default_rng(seed).uniform(
      0, 1, (2, SIZE, SIZE, 3)).astype('float32')


def _assert_levels_match(got, expected):
  assert sorted(got) == sorted(expected)
  for level in expected:
    reference = np.asarray(expected[level])
    diff = np.max(np.abs(np.asarray(got[level]) - reference))
    assert diff <= 1e-4, (level, diff)
    assert np.abs(reference).max() > 0.1  # not a trivial match


def _ours_resnet():
  return resnet.build_resnet('resnet50', (SIZE, SIZE, 3),
                             depth_multiplier=MULTIPLIER)


def test_resnet_backbone_checkpoint(tmp_path):
  reference = build_reference_resnet(50, SIZE, depth_multiplier=MULTIPLIER)
  _randomize(reference)
  path = save_reference_model(reference, tmp_path)
  ours = _ours_resnet()
  assert convert_checkpoint(path, ours) == len(ours.weights)
  _assert_levels_match(ours(_images(), training=False),
                       reference(_images(), training=False))


def test_resnet_backbone_from_a_classifier_checkpoint(tmp_path):
  # How users start from an ImageNet-pretrained ResNet-50.
  reference = build_reference_resnet_classifier(50, SIZE, 10,
                                                depth_multiplier=MULTIPLIER)
  _randomize(reference)
  path = save_reference_model(reference, tmp_path)
  ours = _ours_resnet()
  assert convert_checkpoint(path, ours) == len(ours.weights)
  _assert_levels_match(ours(_images(), training=False),
                       reference.backbone(_images(), training=False))


@pytest.fixture(scope='module')
def retinanet_pair(tmp_path_factory):
  reference = build_reference_retinanet_fpn(
      50, SIZE, CLASSES, depth_multiplier=MULTIPLIER, num_filters=FILTERS)
  _randomize(reference)
  path = save_reference_model(reference, tmp_path_factory.mktemp('ref'))
  ours = build_retinanet('resnet50', CLASSES, (SIZE, SIZE, 3),
                         activation='relu', num_filters=FILTERS,
                         backbone_kwargs={'depth_multiplier': MULTIPLIER},
                         decoder_kwargs={'num_filters': FILTERS})
  return reference, ours, path


def test_retinanet_resnet_fpn_checkpoint(retinanet_pair):
  reference, ours, path = retinanet_pair
  assert convert_checkpoint(path, ours) == len(ours.weights)
  images = _images(2)
  features = reference.decoder(reference.backbone(images, training=False),
                               training=False)
  _assert_levels_match(ours.decoder(ours.backbone(images, training=False),
                                    training=False), features)
  class_outputs, box_outputs = reference.head(features, training=False)[:2]
  got = ours(images, training=False)
  _assert_levels_match(got['class_outputs'], class_outputs)
  _assert_levels_match(got['box_outputs'], box_outputs)


def test_backbone_alone_from_a_retinanet_checkpoint(retinanet_pair):
  reference, _, path = retinanet_pair
  ours = _ours_resnet()
  assert convert_checkpoint(path, ours) == len(ours.weights)
  _assert_levels_match(ours(_images(), training=False),
                       reference.backbone(_images(), training=False))


def test_retinanet_of_other_classes_is_refused(retinanet_pair):
  _, ours, path = retinanet_pair
  other = build_retinanet('resnet50', CLASSES + 1, (SIZE, SIZE, 3),
                          num_filters=FILTERS,
                          backbone_kwargs={'depth_multiplier': MULTIPLIER},
                          decoder_kwargs={'num_filters': FILTERS})
  before = [w.numpy() for w in other.weights]
  with pytest.raises(ValueError, match='2 differ in shape'):
    convert_checkpoint(path, other)
  for value, weight in zip(before, other.weights):  # nothing half-written
    np.testing.assert_array_equal(value, weight.numpy())


def test_resnet_of_another_depth_is_refused(tmp_path):
  reference = build_reference_resnet(50, SIZE, depth_multiplier=MULTIPLIER)
  path = save_reference_model(reference, tmp_path)
  other = resnet.build_resnet('resnet101', (SIZE, SIZE, 3),
                              depth_multiplier=MULTIPLIER)
  with pytest.raises(ValueError, match='weighted layers'):
    convert_checkpoint(path, other)


def test_convert_script_takes_a_resnet(tmp_path):
  reference = build_reference_resnet(50, SIZE)
  _randomize(reference)
  save_reference_model(reference, tmp_path / 'ref')
  output = tmp_path / 'resnet50.weights.h5'
  script = ['scripts/convert_checkpoint.py', '--checkpoint',
            str(tmp_path / 'ref'), '--model_id', 'resnet50']
  subprocess.run([sys.executable, *script, '--output', str(output)],
                 check=True, capture_output=True)
  ours = resnet.build_resnet('resnet50')
  ours.load_weights(str(output))
  _assert_levels_match(ours(_images(), training=False),
                       reference(_images(), training=False))
  refused = subprocess.run([sys.executable, *script, '--min_level', '2',
                            '--output', str(tmp_path / 'x.weights.h5')],
                           capture_output=True, text=True)
  assert refused.returncode == 1
  assert refused.stderr.strip().splitlines()[-1] == (
      'error: --min_level: a ResNet has levels 2..5; drop the flag.')
