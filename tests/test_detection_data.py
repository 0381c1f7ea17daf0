"""Detection data: tf.Example round trip, TFDS coco/2017 (mock data), the
parsers (box alignment under augmentation, Model Garden's eval parser as
oracle), bad input, determinism."""

import logging
import math
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from official.vision.dataloaders import retinanet_input, tf_example_decoder
from official.vision.ops import preprocess_ops
from tensorflow_datasets.testing import mocking

from spinenet_tf.data import coco_tfds, detection_input, detection_parser
from spinenet_tf.data import detection_records, image_ops

SIZE = 128


def jpeg(image):
  return tf.io.encode_jpeg(image, quality=95).numpy()


def png(image):
  return tf.io.encode_png(image).numpy()


def scene(height=240, width=320, box=(60, 30, 140, 110)):
  """Dark noise with one bright rectangle at pixel edges `box`."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
  y0, x0, y1, x1 = box
  image[y0:y1, x0:x1] = 250
  return image, np.array([box], np.float32) / [height, width, height, width]


def record(encoded, boxes=(), classes=(), source_id='7', **kwargs):
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  return detection_records.make_example(
      encoded, 240, 320, boxes, classes, source_id=source_id,
      **kwargs).SerializeToString()


def example(encoded, boxes, classes):
  return detection_records.decode_example(record(encoded, boxes, classes))


def unnormalize(image):
  return np.asarray(image) * image_ops.STDDEV_RGB + image_ops.MEAN_RGB


def bright_box(image):
  """Pixel-edge box of the bright pixels of a parsed image, or None."""
  ys, xs = np.nonzero(unnormalize(image).mean(-1) > 155)
  if len(ys) == 0:
    return None
  return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def write(tmp_path, records, name='data'):
  detection_records.write_tfrecords(str(tmp_path / name), records)
  return str(tmp_path / f'{name}-*.tfrecord')


def test_tfrecord_round_trip():
  boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], np.float32)
  serialized = detection_records.make_example(
      b'image bytes', 100, 200, boxes, [3, 90], source_id=123,
      is_crowd=[0, 1], areas=[10.5, 20.0]).SerializeToString()
  decoded = detection_records.decode_example(serialized)
  assert decoded['encoded'].numpy() == b'image bytes'
  assert decoded['source_id'].numpy() == b'123'
  np.testing.assert_array_equal(decoded['boxes'], boxes)
  np.testing.assert_array_equal(decoded['classes'], [3, 90])
  np.testing.assert_array_equal(decoded['is_crowd'], [False, True])
  np.testing.assert_array_equal(decoded['areas'], [10.5, 20.0])
  # Model Garden's decoder reads the same record.
  reference = tf_example_decoder.TfExampleDecoder().decode(
      tf.constant(detection_records.make_example(
          jpeg(np.zeros((100, 200, 3), np.uint8)), 100, 200, boxes, [3, 90],
          source_id=123).SerializeToString()))
  np.testing.assert_array_equal(reference['groundtruth_boxes'], boxes)
  np.testing.assert_array_equal(reference['groundtruth_classes'], [3, 90])
  assert reference['height'].numpy() == 100 and reference['width'] == 200


def test_ragged_and_missing_object_lists_are_fitted():
  features = detection_records.make_example(
      b'x', 10, 10, [[0.1, 0.1, 0.5, 0.5]] * 3, [1, 2]).features.feature
  del features['image/object/is_crowd']
  del features['image/object/area']
  del features['image/source_id']
  decoded = detection_records.decode_example(tf.train.Example(
      features=tf.train.Features(feature=features)).SerializeToString())
  assert decoded['boxes'].shape == (2, 4)
  np.testing.assert_array_equal(decoded['is_crowd'], [False, False])
  np.testing.assert_array_equal(decoded['areas'], [-1, -1])
  assert decoded['source_id'].numpy().isdigit()  # a hash of the image


def test_normalisation_matches_model_garden():
  image = tf.constant(np.random.default_rng(0).integers(
      0, 256, (5, 7, 3)), tf.uint8)
  np.testing.assert_allclose(image_ops.normalize_image(image),
                             preprocess_ops.normalize_image(image),
                             atol=1e-5)


# JPEGs shrunk 2x or more are decoded with DCT scaling, which differs from
# Model Garden's bilinear resize of the whole image by design: compare JPEGs
# at a scale above 1/2.
@pytest.mark.parametrize('encode, size', [(jpeg, 256), (png, SIZE)])
def test_eval_parser_matches_model_garden(encode, size):
  image, boxes = scene()
  serialized = record(encode(image), np.concatenate([boxes, [
      [0.5, 0.5, 0.9, 0.95]]]), [5, 17], is_crowd=[0, 1])
  ours, labels, dropped = detection_parser.parse_eval(
      detection_records.decode_example(serialized), size)
  parser = retinanet_input.Parser(
      output_size=[size, size], min_level=3, max_level=7, num_scales=3,
      aspect_ratios=[0.5, 1.0, 2.0], anchor_size=3.0, dtype='float32')
  reference, reference_labels = parser.parse_fn(is_training=False)(
      tf_example_decoder.TfExampleDecoder().decode(tf.constant(serialized)))
  np.testing.assert_allclose(ours, reference, atol=1e-4)
  # Row 1 is the scaled image size here, Model Garden's is output_size.
  np.testing.assert_allclose(tf.gather(labels['image_info'], [0, 2, 3]),
                             tf.gather(reference_labels['image_info'],
                                       [0, 2, 3]))
  np.testing.assert_allclose(labels['image_info'][1], [0.75 * size, size])
  truth = reference_labels['groundtruths']
  scale = labels['image_info'][2].numpy()
  np.testing.assert_allclose(labels['boxes'][:2] / np.tile(scale, 2),
                             truth['boxes'][:2], rtol=1e-5, atol=1e-3)
  np.testing.assert_array_equal(labels['classes'][:3], [5, 17, -1])
  np.testing.assert_array_equal(labels['is_crowd'][:2], [False, True])
  np.testing.assert_allclose(labels['areas'][:2], truth['areas'][:2])
  assert labels['source_id'].numpy() == truth['source_id'].numpy() == 7
  assert labels['boxes'].shape == (100, 4)
  assert dropped['invalid_boxes'].numpy() == 0
  assert dropped['truncated_boxes'].numpy() == 0


def test_augmentation_keeps_boxes_on_the_content():
  image, boxes = scene()
  decoded = example(png(image), boxes, [1])
  flipped = set()
  for i in range(24):
    out, labels, _ = detection_parser.parse_train(
        decoded, tf.constant([i, 1]), SIZE, scale_range=(0.3, 3.0))
    truth = bright_box(out)
    if labels['classes'][0] == -1:
      assert truth is None or np.prod(truth[2:] - truth[:2]) < 4
      continue
    box = labels['boxes'][0].numpy()
    np.testing.assert_allclose(box, truth, atol=1.5)
    flipped.add(bool(box[1] + box[3] > SIZE * 0.6))
  # Without jitter the only randomness is the flip: both sides occur.
  for i in range(8):
    _, labels, _ = detection_parser.parse_train(
        decoded, tf.constant([i, 2]), SIZE, scale_range=(1.0, 1.0))
    flipped.add(bool(labels['boxes'][0, 1] > SIZE / 2))
  assert flipped == {False, True}


def test_instance_masks_follow_the_scale_crop_and_flip():
  """The image is the masks themselves (an asymmetric triangle and a
  rectangle, white on black): each instance's mask target equals the
  parsed image over its box, mirrored or not."""
  height, width = 240, 320
  owner = np.zeros((height, width), np.int32)
  y, x = np.mgrid[0:height, 0:width]
  owner[(y >= 40) & (y < 140) & (x >= 30) & (x < 130) & (x - 30 < y - 40)] = 1
  owner[150:220, 180:300] = 2
  boxes = np.array([[41, 30, 140, 129], [150, 180, 220, 300]], np.float32)
  image = np.repeat(((owner > 0) * 255).astype(np.uint8)[..., None], 3, -1)
  masks = [png(((owner == i) * 255).astype(np.uint8)[..., None])
           for i in (1, 2)]
  decoded = detection_records.decode_example(record(
      png(image), boxes / [height, width, height, width], [1, 2],
      masks=masks))
  flips = set()
  for i in range(12):
    out, labels, _ = detection_parser.parse_train(
        decoded, tf.constant([i, 5]), SIZE, scale_range=(0.8, 1.5),
        max_num_instances=4, mask_size=28)
    assert labels['masks'].shape == (4, 28, 28)
    content = (unnormalize(out).mean(-1) > 127.5).astype(np.float32)
    for k in range(4):
      target = labels['masks'][k].numpy()
      if labels['classes'][k] == -1:
        assert not target.any()
        continue
      ymin, xmin, ymax, xmax = labels['boxes'][k].numpy()
      if min(ymax - ymin, xmax - xmin) < 12:
        continue  # cut by the crop to a sliver
      expected = tf.image.resize(
          content[int(ymin):int(np.ceil(ymax)),
                  int(xmin):int(np.ceil(xmax))][..., None],
          [28, 28], 'area')[..., 0].numpy() > 0.5
      got = target > 0.5
      iou = (got & expected).sum() / max((got | expected).sum(), 1)
      assert iou > 0.85, (i, k, iou)
      if labels['classes'][k] == 1:  # the triangle tells the mirror
        flips.add(bool(got[:, :14].sum() > got[:, 14:].sum()))
  assert flips == {False, True}


def test_a_record_with_another_mask_count_is_skipped_and_counted(tmp_path):
  image, boxes = scene()
  mask = png(np.zeros((240, 320, 1), np.uint8))
  pattern = write(tmp_path, [
      record(jpeg(image), boxes, [1], masks=[mask]),
      record(jpeg(image), boxes, [1], masks=[]),
      record(jpeg(image), boxes, [1], masks=[mask, mask])])
  ds = detection_input.build_detection_dataset(
      'tfrecord', True, SIZE, 1, file_pattern=pattern, mask_size=28,
      num_classes=4, seed=1)
  assert len(list(ds)) == 1
  assert ds.skip_counter.skipped_records == 2


def test_tfds_coco_asked_for_masks_says_it_has_none():
  with pytest.raises(ValueError, match='TFDS coco/2017 carries no instance '
                     'masks'):
    detection_input.build_detection_dataset('tfds', True, SIZE, 2,
                                            mask_size=28)


def test_large_jpeg_uses_dct_scaling_and_stays_aligned():
  image, boxes = scene(768, 1024, box=(200, 300, 600, 500))
  decoded = example(jpeg(image), boxes, [1])
  out, labels, _ = detection_parser.parse_eval(decoded, SIZE)
  np.testing.assert_allclose(labels['image_info'][:2],
                             [[768, 1024], [96, 128]])
  np.testing.assert_allclose(labels['boxes'][0], [25, 37.5, 75, 62.5])
  np.testing.assert_allclose(labels['boxes'][0], bright_box(out), atol=1.5)
  for i in range(6):
    out, labels, _ = detection_parser.parse_train(
        decoded, tf.constant([i, 3]), SIZE, scale_range=(0.4, 1.6))
    if labels['classes'][0] > 0:
      np.testing.assert_allclose(labels['boxes'][0], bright_box(out),
                                 atol=1.5)


def test_max_num_instances_pads_and_truncates():
  image, _ = scene()
  boxes = [[0.1 * i, 0.1, 0.1 * i + 0.05, 0.2] for i in range(8)]
  decoded = example(png(image), boxes, range(1, 9))
  _, labels, dropped = detection_parser.parse_eval(decoded, SIZE,
                                                   max_num_instances=5)
  np.testing.assert_array_equal(labels['classes'], [1, 2, 3, 4, 5])
  assert dropped['truncated_boxes'].numpy() == 3
  _, labels, dropped = detection_parser.parse_eval(decoded, SIZE,
                                                   max_num_instances=10)
  np.testing.assert_array_equal(labels['classes'][7:], [8, -1, -1])
  assert dropped['truncated_boxes'].numpy() == 0
  np.testing.assert_array_equal(labels['boxes'][8:], 0)


class _CocoFakes(mocking.EncodedRandomFakeGenerator):
  """TFDS's fake examples made encodable: equal object list lengths (10)
  and ordered box corners."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, constant_dynamic_shape=True, **kwargs)

  def _generate_random_obj(self, feature, tensor_info, rng):
    value = super()._generate_random_obj(feature, tensor_info, rng)
    if isinstance(feature, tfds.features.BBoxFeature):
      value = np.concatenate([np.minimum(value[..., :2], value[..., 2:]),
                              np.maximum(value[..., :2], value[..., 2:])], -1)
    return value


@pytest.fixture
def mock_coco():
  with mock.patch.object(mocking, 'EncodedRandomFakeGenerator', _CocoFakes):
    with tfds.testing.mock_data(num_examples=6):
      yield


def test_coco_label_map():
  ids = coco_tfds.COCO_CATEGORY_IDS
  assert len(ids) == 80 and list(ids) == sorted(set(ids))
  assert ids[0] == 1 and ids[-1] == 90 and 12 not in ids
  features = {'image': tf.constant(b''), 'image/id': tf.constant(5, tf.int64),
              'objects': {'bbox': tf.zeros([4, 4]),
                          'label': tf.constant([0, 11, 79, 80], tf.int64),
                          'is_crowd': tf.zeros([4], tf.bool),
                          'area': tf.zeros([4], tf.int64)}}
  converted = coco_tfds.to_example(features)
  np.testing.assert_array_equal(converted['classes'], [1, 13, 90, -1])
  assert converted['source_id'].numpy() == b'5'


def test_tfds_coco_training_pipeline(mock_coco):
  del mock_coco
  ds = detection_input.build_detection_dataset('tfds', True, SIZE, 2, seed=0)
  assert ds.element_spec[0].shape == (2, SIZE, SIZE, 3)
  assert ds.element_spec[1]['boxes'].shape == (2, 100, 4)
  batches = list(ds)
  assert len(batches) == 3
  for images, labels in batches:
    assert images.dtype == tf.float32 and labels['classes'].dtype == tf.int32
    classes = labels['classes'].numpy()
    assert set(classes[classes > 0]) <= set(coco_tfds.COCO_CATEGORY_IDS)
    assert np.all((labels['boxes'] >= 0) & (labels['boxes'] <= SIZE))
  assert any((labels['classes'] > 0).numpy().any() for _, labels in batches)


def test_tfds_coco_eval_pipeline(mock_coco):
  del mock_coco
  ids = [features['image/id'].numpy()
         for features in coco_tfds.load_records(split='validation')]
  ds = detection_input.build_detection_dataset('tfds', False, SIZE, 4)
  batches = list(ds)
  assert [len(images) for images, _ in batches] == [4, 2]
  labels = batches[0][1]
  assert set(labels) == {'boxes', 'classes', 'is_crowd', 'areas',
                         'image_info', 'source_id'}
  assert labels['image_info'].shape == (4, 4, 2)
  np.testing.assert_array_equal(
      np.concatenate([l['source_id'] for _, l in batches]), ids)
  np.testing.assert_array_equal(labels['image_info'][:, 0], 10)  # mock size


def bad_records():
  """(records, number that must be skipped, number of invalid boxes)."""
  image, boxes = scene()
  good = jpeg(image)
  grey = jpeg(image[..., :1])
  rgba = png(np.concatenate([image, np.full_like(image[..., :1], 9)], -1))
  invalid = [[math.nan, 0.1, 0.5, 0.5], [0.6, 0.1, 0.5, 0.5],
             [1.2, 1.2, 1.5, 1.5], [0.3, 0.3, 0.3, 0.6],
             [0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5],
             [0.1, 0.1, 0.5, 0.5]]
  wrong_type = tf.train.Example.FromString(record(good, boxes, [1]))
  wrong_type.features.feature['image/object/class/label'].CopyFrom(
      tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])))
  kept = [
      record(good, [[-0.1, -0.2, 0.5, 1.5]], [1]),  # clipped, kept
      record(grey, boxes, [2]),
      record(rgba, boxes, [3]),
      record(good),  # no boxes
      record(good, invalid + boxes.tolist(), [1] * 4 + [0, 91, -5] + [4]),
  ]
  skipped = [
      record(b'\xff\xd8\xff\xe0' + bytes(200)),  # corrupt JPEG
      record(good[:len(good) // 2]),  # truncated JPEG
      record(b'not an image'),
      record(b''),
      b'\x00 not a tf.Example',
      wrong_type.SerializeToString(),
  ]
  records = kept + skipped
  return [records[i] for i in np.random.default_rng(0).permutation(
      len(records))], len(skipped), len(invalid)


@pytest.mark.parametrize('is_training', [False, True])
def test_bad_records_are_skipped_and_counted(tmp_path, caplog, is_training):
  records, num_skipped, num_invalid = bad_records()
  counter = detection_input.SkipCounter()
  with caplog.at_level(logging.WARNING):
    ds = detection_input.build_detection_dataset(
        'tfrecord', is_training, SIZE, 1, file_pattern=write(tmp_path, records),
        seed=0, skip_counter=counter, scale_range=(1.0, 1.0), hflip=False)
    batches = list(ds)
  assert len(batches) == len(records) - num_skipped
  assert counter.skipped_records == num_skipped
  assert counter.invalid_boxes == num_invalid
  skips = [r for r in caplog.records if 'Skipped record' in r.getMessage()]
  assert len(skips) == num_skipped
  assert 'data-00000-of-00001.tfrecord#' in skips[0].getMessage()
  for images, labels in batches:
    assert np.isfinite(images).all() and np.isfinite(labels['boxes']).all()
    assert np.all((labels['boxes'] >= 0) & (labels['boxes'] <= SIZE))
  classes = sorted(c for _, labels in batches
                   for c in labels['classes'].numpy().ravel() if c > 0)
  assert classes == [1, 2, 3, 4]


def test_grey_and_rgba_images_get_three_channels():
  image, boxes = scene()
  rgba = np.concatenate([image, np.zeros_like(image[..., :1])], -1)
  for encoded, expected in ((png(rgba), image),
                            (png(image[..., :1]), image[..., :1])):
    out, _, _ = detection_parser.parse_eval(example(encoded, boxes, [1]),
                                            320)
    np.testing.assert_allclose(unnormalize(out[:240]),
                               np.broadcast_to(expected, image.shape),
                               atol=1e-3)


def test_damaged_tfrecord_files_lose_only_the_damaged_records(tmp_path):
  image, boxes = scene()
  records = [record(jpeg(image), boxes, [1], source_id=i) for i in range(4)]
  pattern = write(tmp_path, records)
  path = pattern.replace('*', '00000-of-00001')
  data = open(path, 'rb').read()
  open(tmp_path / 'data-truncated.tfrecord', 'wb').write(
      data[:len(data) * 5 // 8])  # ends inside the third record
  damaged = bytearray(data)
  damaged[len(data) // 4 + 40] ^= 0xFF  # bad CRC in the second record
  open(path, 'wb').write(bytes(damaged))
  counter = detection_input.SkipCounter()
  ds = detection_input.build_detection_dataset(
      'tfrecord', False, SIZE, 8, file_pattern=str(tmp_path / 'data-*'),
      skip_counter=counter)
  (_, labels), = list(ds)
  assert sorted(labels['source_id'].numpy()) == [0, 0, 1, 2, 3]
  assert counter.records_read == 5 and counter.lost_records == 2
  assert sorted(counter.corrupt_files) == [
      path, str(tmp_path / 'data-truncated.tfrecord')]
  assert counter.corrupt_files[path].recovered_records == 2


def test_training_pipeline_is_deterministic_by_seed(tmp_path):
  image, boxes = scene()
  records = [record(jpeg(image), boxes, [1], source_id=i) for i in range(6)]
  pattern = write(tmp_path, records)

  def run(seed):
    return [labels['boxes'].numpy() for _, labels in
            detection_input.build_detection_dataset(
                'tfrecord', True, SIZE, 3, file_pattern=pattern, seed=seed)]

  first = run(3)
  np.testing.assert_array_equal(first, run(3))
  assert not np.array_equal(first, run(4))


def test_argument_errors(tmp_path):
  with pytest.raises(ValueError, match='source must be'):
    detection_input.build_detection_dataset('coco', True, SIZE, 2)
  with pytest.raises(ValueError, match='file_pattern'):
    detection_input.build_detection_dataset('tfrecord', True, SIZE, 2)
  with pytest.raises(FileNotFoundError, match='No files match'):
    detection_input.build_detection_dataset(
        'tfrecord', True, SIZE, 2, file_pattern=str(tmp_path / 'none-*'))
