"""The synthetic shapes dataset: determinism, tight boxes, the record path."""

import filecmp
import os

import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.data import detection_input, image_ops
from spinenet_tf.data import synthetic_shapes
from spinenet_tf.models.retinanet import build_retinanet


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('shapes'))
  synthetic_shapes.write_synthetic_dataset(directory, num_train=12, num_val=5,
                                           image_size=128, seed=3,
                                           examples_per_shard=8)
  return directory


def scenes(count=40, size=96):
  return [synthetic_shapes.draw_scene(np.random.default_rng([7, i]), size,
                                      size + 32) for i in range(count)]


def test_same_seed_same_files_other_seed_other_files(dataset, tmp_path):
  again, other = str(tmp_path / 'again'), str(tmp_path / 'other')
  synthetic_shapes.write_synthetic_dataset(again, 12, 5, 128, seed=3,
                                           examples_per_shard=8)
  synthetic_shapes.write_synthetic_dataset(other, 12, 5, 128, seed=4,
                                           examples_per_shard=8)
  assert_same_seed_same_files(dataset, again, other)


def assert_same_seed_same_files(dataset, again, other):
  """`again` (same seed) holds byte-identical files; `other` (another seed)
  differs in every file but the class names; two train shards."""
  names = sorted(os.listdir(dataset))
  assert names == sorted(os.listdir(again)) == sorted(os.listdir(other))
  assert len([n for n in names if n.startswith('train-')]) == 2
  match, mismatch, _ = filecmp.cmpfiles(dataset, again, names, shallow=False)
  assert match == names and not mismatch
  _, mismatch, _ = filecmp.cmpfiles(dataset, other, names, shallow=False)
  # info.json records the seed; the class names do not depend on it.
  assert set(mismatch) == set(names) - {synthetic_shapes.CLASS_NAMES_FILE}


def test_boxes_are_tight_around_the_drawn_shapes():
  sizes, overlaps = [], 0
  for image, boxes, classes, owner in scenes():
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert 1 <= len(classes) <= 6 and set(classes) <= {1, 2, 3}
    for i, (box, class_id) in enumerate(zip(boxes, classes)):
      ys, xs = np.nonzero(owner == i + 1)
      np.testing.assert_array_equal(
          box, [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
      colours = np.unique(image[owner == i + 1], axis=0)
      assert len(colours) == 1  # one flat colour per shape
      sizes.append(max(box[2] - box[0], box[3] - box[1]))
      if class_id != 1:  # ellipses and triangles do not fill their box
        assert (owner[box[0]:box[2], box[1]:box[3]] == i + 1).mean() < 0.9
    visible = sum((owner[b[0]:b[2], b[1]:b[3]] > 0).sum() for b in boxes)
    overlaps += visible > (owner > 0).sum()  # some boxes overlap
  assert min(sizes) < 20 and max(sizes) > 35 and overlaps > 5


def test_records_hold_the_drawn_scenes(dataset):
  examples = list(synthetic_shapes.load_examples(dataset, 'validation'))
  assert len(examples) == 5
  for j, example in enumerate(examples):
    image, boxes, classes, owner = synthetic_shapes.draw_scene(
        np.random.default_rng([3, 1, j]), 128, 128)
    assert example['source_id'].numpy() == str(1_000_001 + j).encode()
    np.testing.assert_allclose(example['boxes'] * 128, boxes, atol=1e-4)
    np.testing.assert_array_equal(example['classes'], classes)
    np.testing.assert_array_equal(
        example['areas'], np.bincount(owner.ravel())[1:len(classes) + 1])
    decoded = image_ops.decode_image(example['encoded']).numpy()
    for i in range(len(classes)):  # each shape keeps its colour in the JPEG
      mask = owner == i + 1
      np.testing.assert_allclose(np.median(decoded[mask], axis=0),
                                 image[mask][0], atol=12)
      # and its exact instance mask: the visible pixels
      np.testing.assert_array_equal(
          tf.io.decode_png(example['masks'][i])[..., 0].numpy() > 0, mask)


def test_pipeline_reads_the_synthetic_records(dataset):
  train = detection_input.build_detection_dataset(
      'synthetic', True, 128, 4, data_dir=dataset, seed=0)
  batches = list(train)
  assert len(batches) == 3
  images, labels = batches[0]
  assert images.shape == (4, 128, 128, 3) and labels['boxes'].shape == (
      4, 100, 4)
  classes = np.concatenate([l['classes'].numpy().ravel() for _, l in batches])
  assert set(classes) <= {-1, 1, 2, 3} and (classes > 0).sum() >= 12
  evaluation = detection_input.build_detection_dataset(
      'synthetic', False, 128, 8, data_dir=dataset)
  (_, labels), = list(evaluation)
  np.testing.assert_array_equal(labels['source_id'],
                                np.arange(1_000_001, 1_000_006))
  examples = list(synthetic_shapes.load_examples(dataset, 'validation'))
  count = len(examples[2]['classes'])
  np.testing.assert_allclose(labels['boxes'][2, :count],
                             examples[2]['boxes'] * 128, atol=1e-3)
  assert tf.reduce_all(labels['classes'][2, count:] == -1)


def test_batches_feed_the_retinanet_loss(dataset):
  model = build_retinanet('49S', num_classes=synthetic_shapes.NUM_CLASSES,
                          input_shape=(128, 128, 3))
  images, labels = next(iter(detection_input.build_detection_dataset(
      'synthetic', True, 128, 2, data_dir=dataset, seed=0)))
  losses = model.detection_losses(model(images, training=True),
                                  labels['boxes'], labels['classes'])
  assert all(np.isfinite(float(v)) for v in losses.values())
  assert losses['num_positives'] > 0


def test_missing_dataset_has_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='make_synthetic_dataset'):
    detection_input.build_detection_dataset('synthetic', True, 128, 2,
                                            data_dir=str(tmp_path))


def test_sample_images_and_class_names(dataset, tmp_path):
  with open(os.path.join(dataset, synthetic_shapes.CLASS_NAMES_FILE)) as f:
    assert f.read().split() == list(synthetic_shapes.CLASS_NAMES)
  paths = synthetic_shapes.write_sample_images(str(tmp_path),
                                               [(64, 96), (80, 80)])
  shapes = [tuple(tf.io.decode_png(tf.io.read_file(p)).shape) for p in paths]
  assert shapes == [(64, 96, 3), (80, 80, 3)]
