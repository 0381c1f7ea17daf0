"""Classification input: TFDS mock data for the three datasets, and tiny
TFDS datasets prepared on disk for what mock data cannot show (sharding by
files, bad image bytes, exact crops, i_naturalist2021 read from its files)."""

import io
import logging

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from spinenet_tf.data import classification_input as ci
from spinenet_tf.data.image_ops import MEAN_RGB, STDDEV_RGB

LOW = min((0 - m) / s for m, s in zip(MEAN_RGB, STDDEV_RGB))
HIGH = max((255 - m) / s for m, s in zip(MEAN_RGB, STDDEV_RGB))
SOLID_LABELS = [100 * i + 7 for i in range(8)]  # image i is solid grey 30 * i


def encode(array, fmt, mode=None):
  out = io.BytesIO()
  image = Image.fromarray(array)
  (image.convert(mode) if mode else image).save(out, fmt)
  return out.getvalue()


def pattern(height, width):
  y, x = np.mgrid[:height, :width]
  return np.stack([y % 256, x % 256, (3 * y + 5 * x) % 256],
                  -1).astype(np.uint8)


def solid(i):
  return encode(np.full((40, 50, 3), 30 * i, np.uint8), 'JPEG')


def prepare(data_dir, name, version, splits,
            base=tfds.core.GeneratorBasedBuilder, features=None):
  """Writes `splits` ({split: [example]}) as TFDS dataset `name`, 2 files a
  split."""
  body = {
      'name': name, 'VERSION': tfds.core.Version(version), 'RELEASE_NOTES': {},
      '_split_generators': lambda self, _: {
          split: self._generate_examples(examples)
          for split, examples in splits.items()},
      '_generate_examples': lambda self, examples: (
          (str(i), example) for i, example in enumerate(examples)),
  }
  if features is not None:
    body['_info'] = lambda self: tfds.core.DatasetInfo(builder=self,
                                                       features=features)
  builder = type('Tiny', (base,), body, skip_registration=True)(
      data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(num_shards=2))


GOOD = {  # label: image bytes TensorFlow can read, whatever their name says
    0: encode(pattern(40, 50), 'JPEG'),
    1: encode(pattern(40, 50), 'JPEG', 'L'),
    2: encode(pattern(40, 50), 'JPEG', 'CMYK'),
    3: encode(pattern(40, 50), 'PNG'),
    4: encode(pattern(40, 50), 'PNG', 'RGBA'),
    5: encode(pattern(40, 50), 'GIF'),
}
BAD = {6: b'not an image', 7: GOOD[0][:len(GOOD[0]) // 2], 8: b''}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """imagenet2012: 'validation' solid images, 'train' good and bad bytes,
  'test' unlabelled patterns; i_naturalist2021 (TFDS 4.9.10 cannot build it
  from code, so it has its own features here)."""
  path = str(tmp_path_factory.mktemp('tfds'))
  record = lambda image, label: {'image': image, 'label': label,
                                 'file_name': f'{label}.JPEG'}
  prepare(path, 'imagenet2012', '5.1.0', {
      'validation': [record(solid(i), label)
                     for i, label in enumerate(SOLID_LABELS)],
      'train': [record(image, label)
                for label, image in {**GOOD, **BAD}.items()],
      'test': [record(encode(pattern(160, 200), 'PNG'), -1),
               record(encode(pattern(160, 200), 'JPEG'), -1)],
  }, base=tfds.builder_cls('imagenet2012'))
  features = tfds.features.FeaturesDict({
      'id': np.int64, 'file_id': tfds.features.Text(),
      'image': tfds.features.Image(shape=(None, None, 3)),
      'label': tfds.features.ClassLabel(num_classes=10000),
      'supercategory': tfds.features.ClassLabel(num_classes=11)})
  inat = [{'id': i, 'file_id': str(i), 'image': solid(i), 'label': 9000 + i,
           'supercategory': 0} for i in range(4)]
  prepare(path, 'i_naturalist2021', '2.0.1', {'train': inat, 'val': inat},
          features=features)
  return path


def batches(ds):
  return [(x.numpy(), y.numpy()) for x, y in ds]


def grey_level(images):
  """The solid grey level of normalised images, [B]."""
  return (images * STDDEV_RGB + MEAN_RGB).mean(axis=(1, 2, 3))


def test_table_and_tfds_agree():
  for name in ('i_naturalist2017', 'imagenet2012'):
    assert ci.read_num_classes(name) == ci.DATASETS[name][0]
  assert ci.default_splits('i_naturalist2021:2.0.1') == ('train', 'val')
  with pytest.raises(ValueError, match='i_naturalist2017'):
    ci.default_splits('coco/2017')


@pytest.mark.parametrize('name', list(ci.DATASETS))
def test_mock_train_and_eval_batches(name, data_dir):
  num_classes, train_split, eval_split = ci.DATASETS[name]
  with tfds.testing.mock_data(num_examples=6, data_dir=(
      data_dir if name == 'i_naturalist2021' else None)):
    train = ci.build_classification_dataset(
        name, train_split, True, 128, 4, label_smoothing=0.1, seed=0)
    evaluation = ci.build_classification_dataset(name, eval_split, False, 128,
                                                 4)
    assert train.element_spec == (
        tf.TensorSpec([4, 128, 128, 3], tf.float32),
        tf.TensorSpec([4, num_classes], tf.float32))
    assert evaluation.element_spec == (
        tf.TensorSpec([None, 128, 128, 3], tf.float32),
        tf.TensorSpec([None], tf.int32))
    [(images, labels)] = batches(train)  # 6 examples, remainder dropped
    eval_batches = batches(evaluation)
  np.testing.assert_allclose(labels.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(labels.max(-1), 0.9 + 0.1 / num_classes)
  assert [len(y) for _, y in eval_batches] == [4, 2]
  for x in [images] + [x for x, _ in eval_batches]:
    assert LOW - 1e-5 <= x.min() and x.max() <= HIGH + 1e-5
    assert x.std() > 0.1  # real, varied pixels, not the zero fallback


def test_one_hot_labels_belong_to_their_images(data_dir):
  train = ci.build_classification_dataset(
      'imagenet2012', 'validation', True, 128, 8, data_dir=data_dir,
      label_smoothing=0.2, seed=0)
  evaluation = ci.build_classification_dataset(
      'imagenet2012', 'validation', False, 128, 8, data_dir=data_dir,
      label_smoothing=0.2)
  [(train_images, smoothed)] = batches(train)
  [(eval_images, one_hot)] = batches(evaluation)
  for images, labels in ((train_images, smoothed), (eval_images, one_hot)):
    image_ids = np.round(grey_level(images) / 30).astype(int)
    np.testing.assert_array_equal(labels.argmax(-1),
                                  np.array(SOLID_LABELS)[image_ids])
  np.testing.assert_allclose(smoothed.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.sort(smoothed, -1)[:, -2:],
                             [[0.2 / 1000, 0.8 + 0.2 / 1000]] * 8, rtol=1e-5)
  assert set(np.unique(one_hot)) == {0.0, 1.0}
  np.testing.assert_array_equal(one_hot.sum(-1), 1.0)


def test_i_naturalist2021_reads_from_its_files(data_dir):
  evaluation = ci.build_classification_dataset(
      'i_naturalist2021', 'val', False, 128, 4, data_dir=data_dir)
  [(images, labels)] = batches(evaluation)
  np.testing.assert_array_equal(
      labels, 9000 + np.round(grey_level(images) / 30).astype(int))
  assert ci.read_num_classes('i_naturalist2021', data_dir) == 10000


def test_input_context_shards_files_and_splits_the_batch(data_dir):
  halves = []
  for pipeline in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
    ds = ci.build_classification_dataset(
        'imagenet2012', 'validation', False, 128, 4, data_dir=data_dir,
        input_context=context)
    label_batches = [labels for _, labels in batches(ds)]
    assert [len(y) for y in label_batches] == [2, 2]  # 4 over 2 replicas
    halves.append([y for labels in label_batches for y in labels])
  assert not set(halves[0]) & set(halves[1])
  assert sorted(halves[0] + halves[1]) == SOLID_LABELS


@pytest.mark.parametrize('is_training', [False, True])
def test_bad_images_are_converted_or_skipped_and_counted(data_dir, caplog,
                                                         is_training):
  counter = ci.SkipCounter()
  with caplog.at_level(logging.WARNING):
    ds = ci.build_classification_dataset(
        'imagenet2012', 'train', is_training, 128, 1, data_dir=data_dir,
        seed=0, skip_counter=counter)
    kept = {int(y[0]): x[0] for x, y in batches(ds)}
  assert sorted(kept) == sorted(GOOD)
  assert counter.skipped_records == len(BAD)
  assert caplog.text.count('could not be decoded') == len(BAD)
  grey = kept[1] * STDDEV_RGB + MEAN_RGB
  np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-3)
  for image in kept.values():
    assert image.std() > 0.1


def test_eval_center_crop_is_the_padded_center_square(data_dir):
  evaluation = ci.build_classification_dataset(
      'imagenet2012', 'test', False, 128, 2, data_dir=data_dir)
  [(images, labels)] = batches(evaluation)
  np.testing.assert_array_equal(labels, [-1, -1])
  # 160 x 200: side 128 / (128 + 32) * 160 = 128 at (16, 36); no resizing.
  expected = pattern(160, 200)[16:144, 36:164]
  pixels = sorted(images * STDDEV_RGB + MEAN_RGB,
                  key=lambda x: np.abs(x - expected).mean())
  np.testing.assert_allclose(pixels[0], expected, atol=1e-3)  # the PNG
  # The JPEG decodes only the window: the same pixels as a full decode, but
  # for the last column (chroma upsampling sees no right neighbour).
  jpeg = tf.io.decode_jpeg(encode(pattern(160, 200), 'JPEG'))[16:144, 36:164]
  np.testing.assert_allclose(pixels[1][:, :-1], jpeg[:, :-1], atol=1e-3)


def test_random_window_follows_the_standard_ranges():
  size = tf.constant([300, 400])
  center = ci._center_window(size, 128).numpy()
  for i in range(50):
    y, x, h, w = ci._random_window(size, 128, tf.constant([i, 0])).numpy()
    assert 0 <= y and y + h <= 300 and 0 <= x and x + w <= 400
    if (y, x, h, w) != tuple(center):
      assert 0.08 * 0.95 <= h * w / 120_000 <= 1.0
      assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05


def test_training_is_repeatable_with_a_seed_and_randaugment_runs():
  with tfds.testing.mock_data(num_examples=4):
    build = lambda seed, **kwargs: batches(ci.build_classification_dataset(
        'imagenet2012', 'train', True, 128, 4, seed=seed, **kwargs))[0][0]
    first, again, other = build(0), build(0), build(1)
    augmented = build(0, randaugment=(2, 10))
  np.testing.assert_array_equal(first, again)
  assert np.abs(first - other).max() > 0.1
  assert augmented.shape == (4, 128, 128, 3)
  assert LOW - 1e-5 <= augmented.min() and augmented.max() <= HIGH + 1e-5
