"""SavedModel export of a detector or classifier, with serving signatures.

    export_saved_model(model, '/models/retinanet/1')  # folded float32
    export_saved_model(model, path, dtype='bfloat16')  # faster on CPU
    export_saved_model(model, path, jit_compile=True)  # XLA network

Signatures (N images per call; through image_bytes and tf_example every
image may have its own size):
  serving_default  images: uint8 [N, H, W, C], any H, W >= 1; C = 3 (RGB),
                   1 (grey: copied to R, G, B) or 4 (RGBA: alpha dropped),
                   as image_bytes decodes such files
  serving_float    images: float32 [N, H, W, C] on the 0..255 scale, as
                   serving_default takes; checked: finite, in [0, 255], and
                   no image with all pixels in [0, 1] (the 0..1 scale:
                   refused, it would be all but black)
  image_bytes      image_bytes: string [N], encoded JPEG / PNG / GIF / BMP
  tf_example       serialized_examples: string [N], tf.Example protos with
                   the encoded image in 'image/encoded'
The inputs are declared with an unknown shape so that every input reaches
the checks in the graph, which fail with InvalidArgumentError saying what
is expected: a rank other than 4 (images) or 1 (strings), another channel
count (2, 5, ...), a 0-pixel side, an empty string, bytes that are not a
tf.Example (the message names the index; no Python UnicodeDecodeError) or
an undecodable image (TensorFlow's decoder message).

Float input: give it to serving_float. serving_default takes uint8: a
float tf.Tensor is refused before the graph runs (InvalidArgumentError:
"expected to be a uint8 tensor"), but a numpy float array (or a Python
list) is converted to uint8 by TensorFlow's argument conversion before any
graph of ours runs, without a check: values are truncated and wrap modulo
256 (0.9 -> 0, 255.9 -> 255, 256.0 -> 0, -1.0 -> 255), so an image on the
0..1 scale arrives black. No check inside the graph can see that.

Outputs, detection (a `Detector`: its `output_spec`; a RetinaNet's):
  boxes float32 [N, D, 4] (ymin, xmin, ymax, xmax) in pixels of each input
  image, clipped to it; scores float32 [N, D]; classes int32 [N, D] (-1:
  padding); num_detections int32 [N].
Outputs, classification (a classifier from `build_classifier`):
  logits float32 [N, C]; probabilities float32 [N, C] (softmax);
  top_k_classes int32 [N, K]; top_k_probabilities float32 [N, K].

Preprocessing inside the graph, as the input pipelines do for evaluation:
detection scales each image to fit the model input (aspect ratio kept,
bilinear), puts it at the top left and pads; boxes are mapped back with
the per-axis scale (scaled size / original size), as evaluation does.
image_bytes and tf_example decode a JPEG exactly as the evaluation parser
does (`data.image_ops.decode_window`: libjpeg's DCT scaling by 1/2, 1/4,
1/8 when the image shrinks 2x or more, then one bilinear resize), so their
detections equal evaluation's (tests/test_bad_inputs_export.py); the uint8
signature gets decoded pixels and resizes them at full size, so for a JPEG
that shrinks 2x or more its pixels differ slightly from image_bytes'.
Classification takes the central square of S / (S + 32) of the short side
and resizes it to S x S. Both then normalise with ImageNet's mean and std
on the 0..255 scale (`data.image_ops.normalize_image`).

The network is a BatchNorm-folded copy (`fold_batchnorm`) unless
`fold=False`; `dtype='bfloat16'` runs it in bfloat16 (outputs are float32).
Detections come from `detection.tf_postprocess` (TF's fused NMS kernels,
only the pairs above the score threshold touched, the whole batch at once),
equal to the static, XLA-compilable `detection.postprocess` that evaluation
and the JAX backend use. `jit_compile=True` compiles the network with XLA
(each new batch size compiles once, on its first call); the postprocessing
stays outside it: XLA has no fused NMS, and the static NMS compiled with
the network measured slower than the plain export (WORKSPACE
"Decisions"). On a CPU, XLA sped float32 serving at batch 1 up (5-9%) and
slowed it at batch 8 (~15%) and in bfloat16 (~5x): WORKSPACE "The
benchmark".

The export is written (tf.io.gfile: local or gs:// paths) to a staging
folder `.<name>.tmp-<host>-<pid>-<id>` next to `export_dir` and
renamed into place, so `export_dir` never holds a partial model; staging
folders that a killed export left in the same parent (their process gone
from this host, or from another host and older than a day) are removed by
the next export.
"""

import os
import re
import socket
import time
import uuid

import tensorflow as tf
from absl import logging

from spinenet_tf.data import image_ops
from spinenet_tf.detection import tf_postprocess
from spinenet_tf.export.fold_batchnorm import fold_batchnorm
from spinenet_tf.models.detector import Detector

SIGNATURE_KEYS = ('serving_default', 'serving_float', 'image_bytes',
                  'tf_example')
IMAGE_KEY = 'image/encoded'
CHANNELS = (1, 3, 4)


def normalize(images):
  """Pixels on the 0..255 scale [..., W, 3] -> (pixels - mean) / std,
  float32, computed as the input pipelines do (`image_ops.normalize_image`,
  the same float operations)."""
  shape = tf.shape(images)
  rows = tf.reshape(images, tf.concat([[-1], shape[-2:]], 0))
  return tf.reshape(image_ops.normalize_image(rows), shape)


def _require(ok, data, value_fn, fallback):
  """value_fn() if `ok`, else fails with `data` (tf.debugging.Assert's
  message). The failing assertion is the only thing the other branch of a
  tf.cond runs, so no later op can fail first with its own message (plain
  control dependencies do not order that)."""
  def fail():
    with tf.control_dependencies([tf.debugging.Assert(False, data,
                                                      summarize=10)]):
      return tf.identity(fallback)
  return tf.cond(ok, value_fn, fail)


def check_size(images):
  """`images` [N, h, w, 3], once h and w are checked to be >= 1."""
  return _require(
      tf.reduce_all(tf.shape(images)[1:3] > 0),
      ['images must be at least 1x1 pixels; got shape', tf.shape(images)],
      lambda: images, tf.zeros([0, 1, 1, 3], images.dtype))


def check_images(images, signature='serving_default'):
  """serving_default's input (uint8) or serving_float's (float32):
  [N, h, w, C] with C in 1, 3, 4 -> [N, h, w, 3] (grey copied to RGB,
  alpha dropped); anything else fails with a message saying what is
  expected."""
  data = [f'{signature}: images must be {images.dtype.name} [batch, height, '
          'width, channels] with 3 (RGB), 1 (grey) or 4 (RGBA) channels; got '
          'shape', tf.shape(images)]
  fallback = tf.zeros([0, 1, 1, 3], images.dtype)
  # The shape padded to rank >= 4: safe to slice whatever the rank.
  shape = tf.concat([tf.shape(images), [1, 1, 1, 1]], 0)

  def rgb():
    four_d = tf.reshape(images, shape[:4])
    return tf.cond(tf.equal(shape[3], 1),
                   lambda: tf.tile(four_d, [1, 1, 1, 3]),
                   lambda: four_d[..., :3])
  ok = tf.logical_and(tf.equal(tf.rank(images), 4),
                      tf.reduce_any(tf.equal(shape[3], CHANNELS)))
  return tf.ensure_shape(_require(ok, data, rgb, fallback),
                         [None, None, None, 3])


def check_float_scale(images):
  """serving_float's pixels must be finite and on the 0..255 scale. An
  image whose pixels all lie in [0, 1], one of them above 0, is taken to
  be on the 0..1 scale and refused (on the 0..255 scale it would be all but
  black)."""
  maxima = tf.reduce_max(images, axis=[1, 2, 3])
  ok = tf.reduce_all(tf.math.is_finite(images)) & tf.reduce_all(
      (images >= 0.0) & (images <= 255.0)) & tf.logical_not(tf.reduce_any(
          (maxima > 0.0) & (maxima <= 1.0)))
  return _require(
      ok, ['serving_float: images must be finite float32 pixels on the '
           '0..255 scale (an image whose pixels all lie in [0, 1] is on the '
           '0..1 scale: multiply it by 255); got min', tf.reduce_min(images),
           'and per-image max', maxima],
      lambda: images, tf.zeros([0, 1, 1, 3], images.dtype))


def check_strings(strings, signature, name):
  """A string input of `signature` must be 1-D [batch]."""
  return tf.ensure_shape(_require(
      tf.equal(tf.rank(strings), 1),
      [f'{signature}: {name} must be a 1-D string tensor [batch]; got shape',
       tf.shape(strings)],
      lambda: tf.reshape(strings, [-1]), tf.zeros([0], tf.string)), [None])


def resize_and_pad(images, size):
  """uint8 [N, h, w, 3] -> (float32 [N, *size, 3], scale float32 [2]):
  normalised, resized to fit `size` (aspect ratio kept) at the top left,
  zero padding (the mean colour) after; scale (y, x) = scaled size /
  original size, the factor the boxes are divided by."""
  original = tf.shape(images)[1:3]
  scaled = image_ops.scaled_size(
      original, image_ops.fit_scale(original, size), size)
  image = normalize(tf.image.resize(images, scaled))
  image = tf.pad(image, [[0, 0], [0, size[0] - scaled[0]],
                         [0, size[1] - scaled[1]], [0, 0]])
  return (tf.ensure_shape(image, [None, *size, 3]),
          tf.cast(scaled, tf.float32) / tf.cast(original, tf.float32))


def decode_resize_and_pad(encoded, size):
  """An encoded image -> (float32 [*size, 3], original size float32 [2],
  scale float32 [2]) exactly as the evaluation parser prepares it
  (`data.detection_parser.parse_eval`): the window the scaled image needs is
  decoded (a JPEG at 1/2, 1/4 or 1/8 size when it shrinks 2x or more),
  resized once, normalised and padded at the bottom right."""
  pixels, original, _, window, scale = image_ops.decode_window(
      encoded, lambda decoded_size, scale: image_ops.scale_window(
          decoded_size, size, scale),
      lambda original: image_ops.fit_scale(original, size))
  pixels = tf.ensure_shape(pixels, [None, None, 3])
  scaled = image_ops.scaled_size(window[2:], scale, size)
  image = image_ops.normalize_image(tf.image.resize(pixels, scaled))
  image = tf.image.pad_to_bounding_box(image, 0, 0, *size)
  original = tf.cast(original, tf.float32)
  return (tf.ensure_shape(image, [*size, 3]), original,
          tf.cast(scaled, tf.float32) / original)


def center_crop_and_resize(images, size):
  """uint8 [N, h, w, 3] -> float32 [N, *size, 3]: the central square of
  S / (S + 32) of the short side, resized and normalised."""
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  fraction = size[0] / (size[0] + image_ops.CROP_PADDING)
  side = tf.maximum(tf.cast(
      fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32), 1)
  top, left = (height - side + 1) // 2, (width - side + 1) // 2
  crop = images[:, top:top + side, left:left + side]
  image = normalize(tf.image.resize(crop, size))
  return tf.ensure_shape(image, [None, *size, 3])


def check_examples(serialized_examples):
  """Fails, naming the indices, unless every string is a tf.Example whose
  'image/encoded' (if present) holds bytes. tf.io.parse_example's own error
  quotes the raw input, which Python cannot decode when it is not UTF-8
  (UnicodeDecodeError); here each string is tried alone (tf.data drops the
  ones that fail) and the assertion names the bad ones."""
  def parses(index, serialized):
    parsed = tf.io.parse_single_example(
        serialized, {IMAGE_KEY: tf.io.VarLenFeature(tf.string)})
    return index + 0 * tf.size(parsed[IMAGE_KEY].values, tf.int64)

  count = tf.size(serialized_examples, tf.int64)
  good = tf.data.Dataset.from_tensor_slices(
      (tf.range(count), serialized_examples)).map(parses).ignore_errors()
  good_count = good.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)

  def bad_indices():
    found = good.reduce(tf.zeros([count], tf.bool), lambda seen, i: (
        tf.logical_or(seen, tf.equal(tf.range(count), i))))
    return tf.where(tf.logical_not(found))[:, 0]

  indices = tf.cond(tf.equal(good_count, count),
                    lambda: tf.zeros([0], tf.int64), bad_indices)
  return _require(tf.equal(tf.size(indices), 0), [
      'tf_example: serialized_examples must be serialized tf.Example protos '
      f'with the encoded image as bytes in {IMAGE_KEY}; these indices are '
      'not:', indices], lambda: serialized_examples, tf.zeros([0], tf.string))


def check_not_empty(image_bytes):
  """Fails, naming the indices, if some string is empty."""
  empty = tf.where(tf.equal(tf.strings.length(image_bytes), 0))[:, 0]
  return _require(tf.equal(tf.size(empty), 0), [
      'image_bytes: empty string (0 bytes) at these indices, expected an '
      'encoded JPEG, PNG, GIF or BMP image:', empty],
      lambda: image_bytes, tf.zeros([0], tf.string))


class ServingModule(tf.Module):
  """The serving functions of a detector or classifier (see module doc).

  Args:
    model: a `Detector` (RetinaNet) or a classifier with a fixed input
      size.
    fold: fold BatchNorm into the convolutions.
    dtype: compute dtype of the network ('float32', 'bfloat16'); default
      the model's. Needs `fold` (the folded copy is built in that dtype).
    jit_compile: compile the network with XLA (not the postprocessing).
    top_k: classification top-k outputs (at most the number of classes).
  """

  def __init__(self, model, fold=True, dtype=None, jit_compile=False,
               top_k=5):
    super().__init__(name='serving')
    self.is_detector = isinstance(model, Detector)
    if self.is_detector and not model.SERVABLE:
      raise ValueError(f'{type(model).__name__} {model.name!r}: its '
                       'SavedModel export (detections with masks) is not '
                       'implemented yet; a RetinaNet or a classifier exports.')
    input_shape = (model.image_shape if self.is_detector
                   else model.inputs[0].shape[1:])
    self.image_size = tuple(input_shape[:2])
    if None in self.image_size:
      raise ValueError(f'{model.name}: serving needs a fixed input size, got '
                       f'{input_shape}.')
    if dtype is not None and not fold:
      raise ValueError('dtype needs fold=True.')
    self.network = fold_batchnorm(model, dtype) if fold else model
    # Every variable, tracked by the module itself: a SavedModel does not
    # reach the layers a Keras model holds in nested lists (RetinaNet's
    # per-level head norms) and would refuse an unfolded detector.
    self.network_variables = list(self.network.weights)
    if self.is_detector:
      self._postprocess = model.postprocess
      shapes = {k: (shape, tf.as_dtype(dtype))
                for k, (shape, dtype) in model.output_spec().items()}
    else:
      classes = model.outputs[0].shape[-1]
      self.top_k = min(top_k, classes)
      shapes = {'logits': ([classes], tf.float32),
                'probabilities': ([classes], tf.float32),
                'top_k_classes': ([self.top_k], tf.int32),
                'top_k_probabilities': ([self.top_k], tf.float32)}
    # Per image, without the batch dimension.
    self.output_spec = {k: tf.TensorSpec(*v) for k, v in shapes.items()}
    self._raw_outputs = tf.function(
        self._network_float32, jit_compile=jit_compile,
        input_signature=[tf.TensorSpec([None, *self.image_size, 3])])
    self.serve_images = tf.function(
        self._serve_images,
        input_signature=[tf.TensorSpec(None, tf.uint8, name='images')])
    self.serve_float_images = tf.function(
        self._serve_float_images,
        input_signature=[tf.TensorSpec(None, tf.float32, name='images')])
    self.serve_image_bytes = tf.function(
        self._serve_image_bytes,
        input_signature=[tf.TensorSpec(None, tf.string, name='image_bytes')])
    self.serve_tf_examples = tf.function(
        self._serve_tf_examples,
        input_signature=[tf.TensorSpec(None, tf.string,
                                       name='serialized_examples')])

  def signatures(self):
    """{signature key: concrete function} for `tf.saved_model.save`."""
    return dict(zip(SIGNATURE_KEYS, (
        self.serve_images.get_concrete_function(),
        self.serve_float_images.get_concrete_function(),
        self.serve_image_bytes.get_concrete_function(),
        self.serve_tf_examples.get_concrete_function())))

  def _network_float32(self, images):
    """The network's raw outputs, float32."""
    return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32),
                                 self.network(images, training=False))

  def _network_outputs(self, images):
    """Normalised float32 [N, S, S, 3] -> outputs (boxes in model-input
    pixels)."""
    outputs = self._raw_outputs(images)
    if self.is_detector:
      return self._postprocess(outputs, tf_postprocess.detect)
    probabilities = tf.nn.softmax(outputs)
    top = tf.math.top_k(probabilities, self.top_k)
    return {'logits': outputs, 'probabilities': probabilities,
            'top_k_classes': top.indices, 'top_k_probabilities': top.values}

  def _predict(self, images):
    """The network on a normalised batch; an empty batch (which the conv
    kernels reject) gives empty outputs."""
    def empty():
      return {k: tf.zeros([0, *s.shape], s.dtype)
              for k, s in self.output_spec.items()}
    return tf.cond(tf.shape(images)[0] > 0,
                   lambda: self._network_outputs(images), empty)

  def _preprocess(self, images):
    """uint8 [N, h, w, 3] -> (normalised float32 [N, S, S, 3], info
    float32 [N, 4]: height and width of the input images, and the scale
    (y, x) of the boxes)."""
    images = check_size(images)
    if self.is_detector:
      image, scale = resize_and_pad(images, self.image_size)
    else:
      image, scale = center_crop_and_resize(images, self.image_size), [1., 1.]
    info = tf.concat([tf.cast(tf.shape(images)[1:3], tf.float32), scale], 0)
    return image, tf.tile(info[None], [tf.shape(images)[0], 1])

  def _finish(self, outputs, info):
    """Detection boxes back to the pixels of each input image."""
    if not self.is_detector:
      return outputs
    limits = tf.tile(info[:, :2], [1, 2])[:, None, :]
    boxes = outputs['boxes'] / tf.tile(info[:, 2:], [1, 2])[:, None, :]
    return {**outputs, 'boxes': tf.clip_by_value(boxes, 0.0, limits)}

  def _serve_images(self, images):
    image, info = self._preprocess(check_images(images))
    return self._finish(self._predict(image), info)

  def _serve_float_images(self, images):
    image, info = self._preprocess(
        check_float_scale(check_images(images, 'serving_float')))
    return self._finish(self._predict(image), info)

  def _serve_image_bytes(self, image_bytes):
    image_bytes = check_not_empty(
        check_strings(image_bytes, 'image_bytes', 'image_bytes'))

    def one(encoded):
      if self.is_detector:  # as the evaluation parser decodes and resizes
        image, original, scale = decode_resize_and_pad(encoded,
                                                       self.image_size)
        return image, tf.concat([original, scale], 0)
      image, info = self._preprocess(image_ops.decode_image(encoded)[None])
      return image[0], info[0]
    image, info = tf.map_fn(one, image_bytes, fn_output_signature=(
        tf.TensorSpec([*self.image_size, 3], tf.float32),
        tf.TensorSpec([4], tf.float32)))
    return self._finish(self._predict(image), info)

  def _serve_tf_examples(self, serialized_examples):
    serialized_examples = check_examples(check_strings(
        serialized_examples, 'tf_example', 'serialized_examples'))
    features = tf.io.parse_example(
        serialized_examples,
        {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
    return self._serve_image_bytes(features[IMAGE_KEY])


_STAGING_RE = re.compile(r'^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>.+)-'
                         r'(?P<pid>\d+)-[0-9a-f]{32}$')
STALE_SECONDS = 24 * 3600  # another host's staging folder counts as stale


def _host():
  return re.sub(r'[^A-Za-z0-9_.]', '_', socket.gethostname()) or 'host'


def _staging_name(name, kind):
  return f'.{name}.{kind}-{_host()}-{os.getpid()}-{uuid.uuid4().hex}'


def _process_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:  # exists, owned by someone else
    return True
  return True


def _is_stale(parent, entry, match):
  if match['host'] == _host():
    return int(match['pid']) != os.getpid() and not _process_alive(
        int(match['pid']))
  try:  # another machine's (a shared or gs:// parent): by age
    stat = tf.io.gfile.stat(os.path.join(parent, entry))
  except tf.errors.OpError:
    return False
  return time.time() - stat.mtime_nsec / 1e9 > STALE_SECONDS


def remove_stale_staging(parent):
  """Removes the staging folders of exports that were killed before they
  finished (`.<name>.tmp-<host>-<pid>-<id>` whose process is gone; the
  `.old-` folder of an overwrite only when its <name> exists again, since
  otherwise it holds the only copy). Returns the removed paths."""
  removed = []
  try:
    entries = tf.io.gfile.listdir(parent)
  except tf.errors.NotFoundError:
    return removed
  for entry in entries:
    entry = entry.rstrip('/')
    match = _STAGING_RE.match(entry)
    if match is None or not _is_stale(parent, entry, match):
      continue
    if match['kind'] == 'old' and not tf.io.gfile.exists(
        os.path.join(parent, match['name'])):
      logging.warning('%s holds the previous %s of an interrupted overwrite; '
                      'left in place.', os.path.join(parent, entry),
                      match['name'])
      continue
    path = os.path.join(parent, entry)
    try:
      tf.io.gfile.rmtree(path)
    except tf.errors.OpError as e:
      logging.warning('could not remove stale staging folder %s: %s', path,
                      e)
      continue
    logging.info('removed the staging folder of an interrupted export: %s',
                 path)
    removed.append(path)
  return removed


def _is_local(path):
  return '://' not in path


def write_directory_atomically(path, write, overwrite=False):
  """Calls `write(staging)` on a fresh directory next to `path`, then renames
  it to `path`: `path` never holds a partial result. An existing `path` is
  an error, or with `overwrite` replaced (renamed aside, then removed).
  Works on local and gs:// paths (tf.io.gfile); stale staging folders of
  killed writes in the same parent are removed first
  (`remove_stale_staging`)."""
  path = os.fspath(path)
  if _is_local(path):
    path = os.path.abspath(path)
  path = path.rstrip('/')
  if tf.io.gfile.exists(path) and not overwrite:
    raise FileExistsError(f'{path} exists; pass overwrite=True to replace '
                          'it.')
  parent, name = os.path.split(path)
  tf.io.gfile.makedirs(parent)
  remove_stale_staging(parent)
  staging = os.path.join(parent, _staging_name(name, 'tmp'))
  tf.io.gfile.makedirs(staging)
  try:
    write(staging)
    if _is_local(staging):
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(staging, 0o777 & ~umask)
    if tf.io.gfile.exists(path):
      aside = os.path.join(parent, _staging_name(name, 'old'))
      tf.io.gfile.rename(path, aside)
      tf.io.gfile.rename(staging, path)
      tf.io.gfile.rmtree(aside)
    else:
      tf.io.gfile.rename(staging, path)
  except BaseException:
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
    raise


def check_replaceable(export_dir):
  """Refuses an existing `export_dir` that an overwrite may not replace:
  only an earlier SavedModel (with saved_model.pb) or an empty folder is
  replaced, never a file or another folder (a training run, say)."""
  if tf.io.gfile.isdir(export_dir) and (
      not tf.io.gfile.listdir(export_dir) or tf.io.gfile.exists(
          os.path.join(export_dir, 'saved_model.pb'))):
    return
  kind = ('a folder that is not a SavedModel (no saved_model.pb)'
          if tf.io.gfile.isdir(export_dir) else 'a file')
  raise FileExistsError(f'{export_dir} is {kind}; an overwrite replaces only '
                        'an earlier export or an empty folder: choose another '
                        'export folder.')


def export_saved_model(model, export_dir, overwrite=False, extra_files=None,
                       **module_args):
  """Writes `model` with its serving signatures to `export_dir`.

  Args:
    model: a `RetinaNet` or a classifier.
    export_dir: the SavedModel directory to create (atomically, see
      `write_directory_atomically`).
    overwrite: replace an existing `export_dir` (an earlier export or an
      empty folder: `check_replaceable`).
    extra_files: {file name: text} written to `export_dir/assets.extra/`.
    **module_args: `ServingModule` options (fold, dtype, jit_compile,
      top_k).

  Returns:
    The `ServingModule` that was saved.
  """
  export_dir = os.fspath(export_dir)
  if tf.io.gfile.exists(export_dir) and not overwrite:
    raise FileExistsError(f'{export_dir} exists; pass overwrite=True to '
                          'replace it.')
  if tf.io.gfile.exists(export_dir):
    check_replaceable(export_dir)
  module = ServingModule(model, **module_args)

  def write(directory):
    tf.saved_model.save(
        module, directory, signatures=module.signatures(),
        # Serving needs no gradients; tracing those of swish is slow.
        options=tf.saved_model.SaveOptions(
            experimental_custom_gradients=False))
    if extra_files:
      tf.io.gfile.makedirs(os.path.join(directory, 'assets.extra'))
      for name, text in extra_files.items():
        with tf.io.gfile.GFile(os.path.join(directory, 'assets.extra', name),
                               'w') as f:
          f.write(text)

  write_directory_atomically(export_dir, write, overwrite)
  return module
