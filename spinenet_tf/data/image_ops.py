"""Image decoding and normalisation shared by the input pipelines."""

import tensorflow as tf

# ImageNet's mean and std on the 0..255 scale (Model Garden's normalisation).
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# Classification's evaluation crop: the central S / (S + 32) of the short
# side, for an S x S input (input pipeline and SavedModel alike).
CROP_PADDING = 32
_DCT_RATIOS = (1, 2, 4, 8)


def normalize_image(image):
  """[H, W, 3] pixels on the 0..255 scale -> (pixel - mean) / std, float32.

  Computed on rows [H, W * 3] with the constants tiled along them: a long
  inner dimension vectorises, broadcasting a [3] vector does not (5x
  slower on CPU).
  """
  shape = tf.shape(image)
  rows = tf.reshape(tf.cast(image, tf.float32), [shape[0], -1])
  scale = tf.tile([1.0 / s for s in STDDEV_RGB], shape[1:2])
  offset = tf.tile([-m / s for m, s in zip(MEAN_RGB, STDDEV_RGB)],
                   shape[1:2])
  return tf.reshape(rows * scale + offset, shape)


def fit_scale(size, output_size, scale_factor=1.0):
  """The scale that fits an image of `size` (int32 [2]) into `output_size`
  (a side, or [height, width]) times `scale_factor`, aspect ratio kept."""
  return tf.reduce_min(scale_factor * tf.cast(output_size, tf.float32) /
                       tf.cast(size, tf.float32))


def scale_window(size, output_size, scale, offset_fraction=(0.0, 0.0)):
  """int32 [4] (y, x, h, w): the crop of an image of `size` (int32 [2])
  that fills at most `output_size` once scaled by `scale`, placed at
  `offset_fraction` (y, x in [0, 1]) of the room left."""
  size = tf.cast(size, tf.float32)
  crop = tf.minimum(size, tf.maximum(
      tf.round(tf.cast(output_size, tf.float32) / scale), 1.0))
  offset_fraction = tf.convert_to_tensor(offset_fraction, tf.float32)
  origin = tf.minimum(tf.floor(offset_fraction * (size - crop + 1.0)),
                      size - crop)
  return tf.cast(tf.concat([origin, crop], 0), tf.int32)


def scaled_size(crop, scale, output_size):
  """int32 [2]: the sides of `crop` (int32 [2]) times `scale`, rounded, in
  [1, output_size]."""
  return tf.cast(tf.clip_by_value(
      tf.round(tf.cast(crop, tf.float32) * scale), 1.0,
      tf.cast(output_size, tf.float32)), tf.int32)


def decode_image(encoded):
  """Image file bytes -> uint8 [H, W, 3] (grey expanded, alpha dropped, the
  first frame of a GIF). Raises on a corrupt image."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  return tf.ensure_shape(image, [None, None, 3])


def decode_window(encoded, window_fn, scale_fn=None):
  """Decodes only the part of an image file that `window_fn` picks.

  A JPEG (grey and CMYK too) gives its size in its header and
  `decode_and_crop_jpeg` decodes just the window; with `scale_fn`, at 1/2,
  1/4 or 1/8 size (libjpeg's DCT scaling) when the window shrinks 2x or
  more. Other formats (PNG, GIF, BMP, WebP) are decoded whole
  (`decode_image`) and sliced. Raises on a corrupt image.

  Args:
    encoded: string [], the image file.
    window_fn: (size, scale) -> int32 [4] (y, x, h, w), the window inside
      an image of `size` (int32 [2], as decoded) that will be resized by
      `scale` (float32 []).
    scale_fn: the original size (int32 [2]) -> the scale (float32 []) the
      window will be resized by; None: decode at full size, scale 1.

  Returns:
    uint8 RGB pixels [h, w, 3]; int32 [2] original size and decoded size
    (smaller after DCT scaling); the window; the scale from decoded pixels
    (`scale_fn`'s times the DCT ratio).
  """
  unit = tf.constant(1.0)

  def jpeg():
    size = tf.image.extract_jpeg_shape(encoded)[:2]
    if scale_fn is None:
      window = window_fn(size, unit)
      return (tf.image.decode_and_crop_jpeg(encoded, window, channels=3),
              size, size, window, unit)
    scale = scale_fn(size)
    ratio_index = tf.cast(tf.clip_by_value(
        tf.floor(-tf.math.log(scale) / tf.math.log(2.0) + 1e-4), 0.0,
        len(_DCT_RATIOS) - 1.0), tf.int32)
    ratio = tf.bitwise.left_shift(1, ratio_index)
    decoded_size = (size + ratio - 1) // ratio  # libjpeg rounds up
    scale *= tf.cast(ratio, tf.float32)
    window = window_fn(decoded_size, scale)
    pixels = tf.switch_case(ratio_index, [
        lambda r=r: tf.image.decode_and_crop_jpeg(encoded, window,
                                                  channels=3, ratio=r)
        for r in _DCT_RATIOS])
    return pixels, size, decoded_size, window, scale

  def other():
    image = decode_image(encoded)
    size = tf.shape(image)[:2]
    scale = unit if scale_fn is None else scale_fn(size)
    window = window_fn(size, scale)
    pixels = tf.slice(image, tf.concat([window[:2], [0]], 0),
                      tf.concat([window[2:], [3]], 0))
    return pixels, size, size, window, scale

  return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
