"""The synthetic scenes dataset: determinism, classes that need shape and
texture, sizes, occlusion, the record path, bad arguments."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from spinenet_tf import configs
from spinenet_tf.data import detection_input, synthetic_scenes, synthetic_shapes
from spinenet_tf.training import config as config_lib
from spinenet_tf.training import tasks
from tests.test_synthetic_shapes import assert_same_seed_same_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = dict(num_train=8, num_val=4, image_size=128, seed=3,
            examples_per_shard=4, min_objects=3, max_objects=6)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('scenes'))
  synthetic_scenes.write_synthetic_dataset(directory, **ARGS)
  return directory


@pytest.fixture(scope='module')
def scenes():
  """64 scenes at 128 px with the default 2..30 objects."""
  return [synthetic_scenes.draw_scene(np.random.default_rng([5, i]), 128, 128)
          for i in range(64)]


def test_same_seed_same_bytes_in_another_process(dataset, tmp_path):
  again, other = str(tmp_path / 'again'), str(tmp_path / 'other')
  subprocess.run(
      [sys.executable, '-c',
       'import sys; from spinenet_tf.data import synthetic_scenes; '
       f'synthetic_scenes.write_synthetic_dataset(sys.argv[1], **{ARGS!r})',
       again], check=True, cwd=ROOT, capture_output=True,
      env={**os.environ, 'PYTHONHASHSEED': '123'})
  synthetic_scenes.write_synthetic_dataset(other, **{**ARGS, 'seed': 4})
  assert_same_seed_same_files(dataset, again, other)


def test_info_and_class_names(dataset):
  info = synthetic_scenes.read_info(dataset)
  assert info['num_classes'] == synthetic_scenes.NUM_CLASSES == 13
  assert info['class_names'] == list(synthetic_scenes.CLASS_NAMES)
  assert info['dataset'] == 'synthetic_scenes'
  assert info['num_examples'] == {'train': 8, 'validation': 4}
  with open(os.path.join(dataset, synthetic_scenes.CLASS_NAMES_FILE)) as f:
    assert f.read().split() == info['class_names']
  shapes, textures = zip(*synthetic_scenes.CLASSES)
  assert len(set(synthetic_scenes.CLASSES)) >= 10
  # Each shape has two or more textures and each texture two or more shapes.
  assert min(shapes.count(s) for s in shapes) >= 2
  assert min(textures.count(t) for t in textures) >= 2


def test_counts_sizes_boxes_and_occlusion(scenes):
  sides, overlapping = [], 0
  for image, boxes, classes, owner, drawn in scenes:
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert 2 <= len(classes) <= 30 and set(classes) <= set(range(1, 13))
    visible = np.bincount(owner.ravel(), minlength=len(classes) + 1)[1:]
    assert np.all(visible >= (1 - synthetic_scenes.MAX_HIDDEN) * drawn)
    for i, box in enumerate(boxes):
      ys, xs = np.nonzero(owner == i + 1)
      np.testing.assert_array_equal(  # the visible extent, in the image
          box, [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    sides.extend(np.maximum(boxes[:, 2] - boxes[:, 0],
                            boxes[:, 3] - boxes[:, 1]) / 128)
    overlapping += np.any(visible < drawn)
  assert min(sides) < 0.08 and max(sides) > 0.45
  assert np.mean(np.array(sides) < 0.15) > 0.2  # small objects are common
  assert overlapping > 10
  counts = [len(scene[2]) for scene in scenes]
  assert min(counts) <= 5 and max(counts) >= 20


def test_object_count_range_is_honoured(dataset):
  for image, boxes, classes, _, _ in (
      synthetic_scenes.draw_scene(np.random.default_rng(i), 96, 160, 4, 4)
      for i in range(5)):
    assert image.shape == (96, 160, 3) and len(classes) == len(boxes) == 4
  for split in synthetic_scenes.SPLITS:
    counts = [len(e['classes']) for e in synthetic_scenes.load_examples(
        dataset, split)]
    assert len(counts) == ARGS['num_' + ('train' if split == 'train' else
                                          'val')]
    assert min(counts) >= 3 and max(counts) <= 6


def _class_statistics(scenes):
  """Per class name: (pixel std, mean neighbour difference, fill of its
  box) of its unoccluded objects of 16 px or more."""
  stats = {}
  for image, boxes, classes, owner, drawn in scenes:
    for i, (box, class_id) in enumerate(zip(boxes, classes)):
      mask = owner == i + 1
      if mask.sum() < drawn[i] or min(box[2] - box[0], box[3] - box[1]) < 16:
        continue
      inside = mask[:, 1:] & mask[:, :-1]
      step = np.abs(image[:, 1:].astype(int) - image[:, :-1])[inside]
      fill = mask[box[0]:box[2], box[1]:box[3]].mean()
      stats.setdefault(synthetic_scenes.CLASS_NAMES[class_id], []).append(
          (image[mask].std(0).mean(), step.mean(), fill))
  return {name: np.median(values, 0) for name, values in stats.items()}


def test_classes_differ_in_texture_and_in_shape(scenes):
  std, step, fill = (
      {name: values[k] for name, values in _class_statistics(scenes).items()}
      for k in range(3))
  # Same shape, other texture: solid is flat, stripes and checker are not.
  assert std['rectangle_solid'] < 8
  assert std['rectangle_stripes'] > 30 and std['rectangle_checker'] > 30
  # Gradients change slowly, stripes in steps.
  assert step['ring_gradient'] < 10 < step['ring_stripes']
  # Same texture, other shape: how much of the box the object fills.
  assert fill['rectangle_stripes'] > 0.95
  assert fill['triangle_stripes'] < 0.6 and fill['ring_stripes'] < 0.75


def test_records_decode_through_the_pipeline(dataset):
  train = detection_input.build_detection_dataset(
      'synthetic_scenes', True, 128, 4, data_dir=dataset, seed=0)
  batches = list(train)
  assert len(batches) == 2 and batches[0][0].shape == (4, 128, 128, 3)
  classes = np.concatenate([l['classes'].numpy().ravel() for _, l in batches])
  # The default num_classes is the scenes' 13 slots: no class id dropped.
  assert set(classes) - {-1} <= set(range(1, 13)) and classes.max() > 3
  examples = list(synthetic_scenes.load_examples(dataset, 'validation'))
  (_, labels), = list(detection_input.build_detection_dataset(
      'synthetic_scenes', False, 128, 4, data_dir=dataset))
  for j, example in enumerate(examples):
    count = len(example['classes'])
    np.testing.assert_allclose(labels['boxes'][j, :count],
                               example['boxes'] * 128, atol=1e-3)
    np.testing.assert_array_equal(labels['classes'][j, :count],
                                  example['classes'])


def test_the_other_synthetic_dataset_is_refused(dataset, tmp_path):
  synthetic_shapes.write_synthetic_dataset(str(tmp_path), 2, 1, 64)
  with pytest.raises(ValueError, match="holds the 'synthetic' dataset"):
    detection_input.build_detection_dataset(
        'synthetic_scenes', True, 128, 2, data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="holds the 'synthetic_scenes'"):
    detection_input.build_detection_dataset('synthetic', True, 128, 2,
                                            data_dir=dataset)
  with pytest.raises(ValueError, match="'synthetic_scenes' needs data_dir"):
    detection_input.build_detection_dataset('synthetic_scenes', True, 128, 2)


@pytest.mark.parametrize('key, value', [
    ('num_train', 0), ('num_val', 0), ('image_size', 0), ('image_size', 32),
    ('image_size', 128.0), ('seed', 'a'), ('seed', -1), ('seed', 1.5),
    ('examples_per_shard', 0), ('min_objects', 0), ('max_objects', 2)])
def test_bad_arguments_name_the_argument(key, value, tmp_path):
  with pytest.raises(ValueError, match=f'^{key} must be'):
    synthetic_scenes.write_synthetic_dataset(
        str(tmp_path), **{**ARGS, key: value})
  assert not os.listdir(tmp_path)


def test_sample_images(tmp_path):
  import tensorflow as tf
  paths = synthetic_scenes.write_sample_images(str(tmp_path),
                                               [(64, 96), (80, 80)])
  shapes = [tuple(tf.io.decode_png(tf.io.read_file(p)).shape) for p in paths]
  assert shapes == [(64, 96, 3), (80, 80, 3)]


def test_training_config_writes_and_reads_the_scenes(tmp_path):
  config = config_lib.load_experiment(
      configs.path('demo_retinanet_synthetic'),
      ['train_data.source=synthetic_scenes,eval_data.source=synthetic_scenes,'
       'train_data.synthetic_num_images=6,eval_data.synthetic_num_images=2,'
       'train_data.global_batch_size=2,train_data.max_num_instances=30,'
       'model.num_classes=13,model.input_size=128'])
  task = tasks.build_task(config, data_dir=str(tmp_path))
  images, labels = next(iter(task.train_dataset()))
  assert images.shape[1:] == (128, 128, 3)
  with open(os.path.join(tmp_path, synthetic_scenes.INFO_FILE)) as f:
    info = json.load(f)
  assert info['dataset'] == 'synthetic_scenes' and info['image_size'] == 128
  assert info['num_examples'] == {'train': 6, 'validation': 2}
  assert labels['classes'].numpy().max() > 0


def test_training_config_needs_the_scenes_class_slots():
  with pytest.raises(ValueError, match='model.num_classes must be >= 13 for '
                                       "train_data.source 'synthetic_scenes'"):
    config_lib.load_experiment(
        configs.path('demo_retinanet_synthetic'),
        ['train_data.source=synthetic_scenes'])


def test_sample_grid(tmp_path):
  path = str(tmp_path / 'grid.png')
  grid = synthetic_scenes.write_sample_grid(path, count=3, image_size=64,
                                            columns=2)
  assert grid.shape == (128, 128, 3)
  scene = synthetic_scenes.draw_scene(np.random.default_rng([0, 2, 1]), 64,
                                      64)[0]
  assert np.any(grid[:64, 64:] != scene)  # boxes drawn on the scene
  assert np.all(grid[64:, 64:] == 255)  # the empty tile
  written = np.asarray(Image.open(path).convert('RGB'))
  assert written.shape == grid.shape and np.abs(
      written.astype(int) - grid).mean() < 3
  other = synthetic_scenes.write_sample_grid(path, 1, 64, seed=1, columns=1)
  assert other.shape == (64, 64, 3) and np.any(other != grid[:64, :64])
  with pytest.raises(ValueError, match='^count must be'):
    synthetic_scenes.write_sample_grid(path, count=0)
