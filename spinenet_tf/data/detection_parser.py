"""Detection parsers: an example dict (see `detection_records`) -> a fixed
size image and padded ground truth.

Training: random scale jitter (the long side becomes `scale * output_size`),
a random crop of at most output_size x output_size, a random horizontal flip;
crowd boxes are dropped. Evaluation: the long side becomes output_size.

The image is decoded once, and only the part that is used
(`image_ops.decode_window`): for a JPEG the
header gives the size, the scale and crop give a window, and
`decode_and_crop_jpeg` decodes just that window, with libjpeg's DCT scaling
(1/2, 1/4, 1/8) when the image shrinks 2x or more; the window is then
resized once. Other formats (PNG, GIF, BMP) are decoded whole and sliced.
Grey images get 3 channels, alpha is dropped.

Outputs:
  image    float32 [S, S, 3]: (pixel - mean) / std with ImageNet's mean and
           std on the 0..255 scale (Model Garden's normalisation), the scaled
           image at the top left, zero padding (the mean colour) after it.
  labels   boxes [M, 4] float32 (ymin, xmin, ymax, xmax) in pixels of the
           output image; classes [M] int32; padding: zero boxes, class -1.
  with masks (training, `mask_size` K): masks [M, K, K] float32 in [0, 1],
           each instance's mask over its final box (Model Garden's
           targets, cropped at 112 there), zeros for padding; a record
           whose mask count, or a mask whose size, differs from its boxes
           or image fails (skipped and counted by the caller).
  eval labels add is_crowd [M] bool, areas [M] float32 (original pixels),
           image_info [4, 2] float32 (original size, scaled size, scale,
           offset (0, 0); original boxes = boxes / scale; Model Garden's
           row 1 is output_size instead of the scaled size) and source_id
           int64 (the decimal source id if it fits in int64, else a
           62-bit hash of it).
  dropped  {'invalid_boxes': boxes dropped as invalid (non-finite, empty,
           outside the image, or class outside 1..num_classes-1),
           'truncated_boxes': boxes beyond max_num_instances, cut off}
           (int32 scalars; `SkipCounter` counts and logs them).
"""

import tensorflow as tf

from spinenet_tf.data import image_ops


def _pad(values, size, value):
  """values[:size] padded with `value` to a static first dimension `size`."""
  values = values[:size]
  rank = values.shape.rank
  values = tf.pad(values, [[0, size - tf.shape(values)[0]]] + [[0, 0]] *
                  (rank - 1), constant_values=value)
  return tf.ensure_shape(values, [size] + values.shape[1:])


def _valid_boxes(example, num_classes):
  """Mask of boxes that are finite, non-empty inside [0, 1] and have a class
  in 1..num_classes-1."""
  boxes = example['boxes']
  finite = tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
  clipped = tf.clip_by_value(tf.where(finite[:, None], boxes, 0.0), 0.0, 1.0)
  classes = example['classes']
  return (finite & (clipped[:, 0] < clipped[:, 2]) &
          (clipped[:, 1] < clipped[:, 3]) & (classes >= 1) &
          (classes < num_classes))


def _output_boxes(boxes, decoded_size, origin, crop, scaled, flip):
  """Normalised boxes -> pixels of the scaled (and flipped) crop, clipped."""
  def yxyx(v):
    return tf.cast(tf.tile(v, [2]), tf.float32)

  boxes = (boxes * yxyx(decoded_size) - yxyx(origin)) * (
      yxyx(scaled) / yxyx(crop))
  width = tf.cast(scaled[1], tf.float32)
  boxes = tf.cond(flip, lambda: tf.stack(
      [boxes[:, 0], width - boxes[:, 3], boxes[:, 2], width - boxes[:, 1]],
      axis=-1), lambda: boxes)
  return tf.clip_by_value(boxes, 0.0, yxyx(scaled))


def _instance_masks(pngs, boxes, size, decoded_size, origin, crop, scaled,
                    flip, mask_size):
  """Each PNG mask (full image) resampled over its final box [K, 4]
  (pixels of the scaled, flipped crop) -> [K, mask_size, mask_size]."""
  width = tf.cast(scaled[1], tf.float32)
  unflipped = tf.cond(flip, lambda: tf.stack(
      [boxes[:, 0], width - boxes[:, 3], boxes[:, 2], width - boxes[:, 1]],
      axis=-1), lambda: boxes)

  def yxyx(v):
    return tf.cast(tf.tile(v, [2]), tf.float32)

  normalised = (unflipped * (yxyx(crop) / yxyx(scaled)) + yxyx(origin)) / (
      yxyx(decoded_size))

  def decode(png):
    mask = tf.io.decode_png(png, channels=1)
    tf.debugging.assert_equal(
        tf.shape(mask)[:2], tf.cast(size, tf.int32),
        message='image/object/mask: a mask whose size is not the image\'s')
    return tf.cast(mask > 0, tf.float32)

  masks = tf.map_fn(decode, pngs, fn_output_signature=tf.TensorSpec(
      [None, None, 1], tf.float32))
  crops = tf.image.crop_and_resize(
      masks, normalised, tf.range(tf.shape(boxes)[0]),
      [mask_size, mask_size])[..., 0]
  return tf.cond(flip, lambda: tf.reverse(crops, [2]), lambda: crops)


def _parse(example, output_size, scale_factor, offset_fraction, flip,
           keep_crowd, num_classes, max_num_instances, mask_size=None):
  """The shared parser: image, labels, eval extras (is_crowd, areas), the
  original and scaled size [2, 2], dropped counts."""
  pixels, size, decoded_size, window, scale = image_ops.decode_window(
      example['encoded'], lambda decoded_size, scale: image_ops.scale_window(
          decoded_size, output_size, scale, offset_fraction),
      lambda size: image_ops.fit_scale(size, output_size, scale_factor))
  origin, crop = window[:2], window[2:]
  scaled = image_ops.scaled_size(crop, scale, output_size)
  pixels = tf.cond(flip, lambda: tf.reverse(pixels, [1]), lambda: pixels)
  image = image_ops.normalize_image(tf.image.resize(pixels, scaled))
  image = tf.image.pad_to_bounding_box(image, 0, 0, output_size, output_size)
  image.set_shape([output_size, output_size, 3])

  valid = _valid_boxes(example, num_classes)
  keep = valid if keep_crowd else valid & ~example['is_crowd']
  boxes = _output_boxes(tf.boolean_mask(example['boxes'], keep),
                        decoded_size, origin, crop, scaled, flip)
  inside = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])

  def kept(values):
    return tf.boolean_mask(tf.boolean_mask(values, keep), inside)

  original = tf.cast(size, tf.float32)
  normalised = example['boxes']
  box_areas = ((normalised[:, 2] - normalised[:, 0]) *
               (normalised[:, 3] - normalised[:, 1]) * original[0] *
               original[1])
  labels = {'boxes': _pad(tf.boolean_mask(boxes, inside), max_num_instances,
                          0.0),
            'classes': _pad(kept(example['classes']), max_num_instances, -1)}
  if mask_size is not None:
    tf.debugging.assert_equal(
        tf.size(example['masks']), tf.size(example['classes']),
        message='image/object/mask: the record has another number of '
        'masks than boxes')
    masks = _instance_masks(kept(example['masks'])[:max_num_instances],
                            labels['boxes'][:tf.minimum(
                                tf.reduce_sum(tf.cast(inside, tf.int32)),
                                max_num_instances)],
                            size, decoded_size, origin, crop, scaled, flip,
                            mask_size)
    labels['masks'] = _pad(masks, max_num_instances, 0.0)
  extras = {'is_crowd': kept(example['is_crowd']),
            'areas': kept(tf.where(example['areas'] < 0, box_areas,
                                   example['areas']))}
  info = tf.stack([original, tf.cast(scaled, tf.float32)])
  dropped = {'invalid_boxes': tf.reduce_sum(tf.cast(~valid, tf.int32)),
             'truncated_boxes': tf.maximum(
                 tf.reduce_sum(tf.cast(inside, tf.int32)) -
                 max_num_instances, 0)}
  return image, labels, extras, info, dropped


def parse_train(example, seed, output_size, scale_range=(0.5, 2.0),
                hflip=True, num_classes=91, max_num_instances=100,
                mask_size=None):
  """Training parser; `seed` (int [2]) makes the augmentation repeatable;
  `mask_size`: also the instance masks (the example's 'masks').

  Returns (image, {'boxes', 'classes'[, 'masks']}, dropped).
  """
  low, high = scale_range
  u = tf.random.stateless_uniform([4], seed)
  image, labels, _, _, dropped = _parse(
      example, output_size, low + (high - low) * u[0], u[1:3],
      tf.logical_and(hflip, u[3] < 0.5), False, num_classes, max_num_instances,
      mask_size)
  return image, labels, dropped


_INT64_MAX = 2**63 - 1


def _fits_int64(source_id):
  """Whether a string of 1..19 decimal digits is at most 2**63 - 1."""
  short = tf.strings.regex_full_match(source_id, '[0-9]{1,18}')
  long = tf.strings.regex_full_match(source_id, '[0-9]{19}')

  def nineteen_digits():
    head = tf.strings.to_number(tf.strings.substr(source_id, 0, 18), tf.int64)
    last = tf.strings.to_number(tf.strings.substr(source_id, 18, 1), tf.int64)
    return (head < _INT64_MAX // 10) | (
        (head == _INT64_MAX // 10) & (last <= _INT64_MAX % 10))

  return short | tf.cond(long, nineteen_digits, lambda: tf.constant(False))


def _image_id(source_id):
  """The decimal source id as int64 (up to 2**63 - 1: the 63-bit ids that
  `detection_records` gives records without one), else a stable hash of
  it."""
  return tf.cond(
      _fits_int64(source_id),
      lambda: tf.strings.to_number(source_id, tf.int64),
      lambda: tf.strings.to_hash_bucket_fast(source_id, 2**62))


def parse_eval(example, output_size, num_classes=91, max_num_instances=100):
  """Evaluation parser: no augmentation, crowd boxes kept (flagged).

  Returns (image, labels with is_crowd, areas, image_info, source_id,
  dropped).
  """
  image, labels, extras, info, dropped = _parse(
      example, output_size, 1.0, tf.zeros([2]), tf.constant(False), True,
      num_classes, max_num_instances)
  labels.update(
      is_crowd=_pad(extras['is_crowd'], max_num_instances, False),
      areas=_pad(extras['areas'], max_num_instances, 0.0),
      image_info=tf.stack([info[0], info[1], info[1] / info[0],
                           tf.zeros([2])]),
      source_id=_image_id(example['source_id']))
  return image, labels, dropped
