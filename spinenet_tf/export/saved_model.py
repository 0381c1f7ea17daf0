"""SavedModel export of a detector or classifier, with serving signatures.

    export_saved_model(model, '/models/retinanet/1')          # folded float32
    export_saved_model(model, path, dtype='bfloat16', jit_compile=True)

Signatures (N images per call; through image_bytes and tf_example every
image may have its own size):
  serving_default  images: uint8 [N, H, W, 3], any H, W >= 1
  image_bytes      image_bytes: string [N], encoded JPEG / PNG / GIF / BMP
  tf_example       serialized_examples: string [N], tf.Example protos with
                   the encoded image in 'image/encoded'
Outputs, detection (a `RetinaNet`):
  boxes float32 [N, D, 4] (ymin, xmin, ymax, xmax) in pixels of each input
  image; scores float32 [N, D]; classes int32 [N, D] (-1: padding);
  num_detections int32 [N].
Outputs, classification (a classifier from `build_classifier`):
  logits float32 [N, C]; probabilities float32 [N, C] (softmax);
  top_k_classes int32 [N, K]; top_k_probabilities float32 [N, K].

Preprocessing inside the graph, as the input pipelines do for evaluation:
detection scales each image to fit the model input (aspect ratio kept,
bilinear), puts it at the top left and pads; classification takes the
central square of S / (S + 32) of the short side and resizes it to S x S.
Both then normalise with ImageNet's mean and std on the 0..255 scale.

The network is a BatchNorm-folded copy (`fold_batchnorm`) unless
`fold=False`; `dtype='bfloat16'` runs it in bfloat16 (outputs are float32);
`jit_compile=True` compiles the network and detection postprocessing with
XLA. The export is written to a temporary directory next to `export_dir`
and renamed into place, so `export_dir` never holds a partial model.
"""

import os
import shutil
import tempfile

import tensorflow as tf

from spinenet_tf.export.fold_batchnorm import fold_batchnorm
from spinenet_tf.models.retinanet import RetinaNet

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CROP_PADDING = 32  # classification: central S / (S + 32) of the short side
SIGNATURE_KEYS = ('serving_default', 'image_bytes', 'tf_example')


def normalize(images):
  """Pixels on the 0..255 scale -> (pixels - mean) / std, float32."""
  return (tf.cast(images, tf.float32) - MEAN_RGB) / STDDEV_RGB


def check_size(images):
  """`images` [N, h, w, 3], once h and w are checked to be >= 1."""
  with tf.control_dependencies([tf.debugging.assert_positive(
      tf.shape(images)[1:3], message='images must be at least 1x1 pixels')]):
    return tf.identity(images)


def resize_and_pad(images, size):
  """uint8 [N, h, w, 3] -> (float32 [N, *size, 3], scale): normalised, scaled
  by `scale` to fit `size` (aspect ratio kept) at the top left, zero padding
  (the mean colour) after."""
  original = tf.cast(tf.shape(images)[1:3], tf.float32)
  target = tf.constant(size, tf.float32)
  scale = tf.reduce_min(target / original)
  scaled = tf.cast(tf.clip_by_value(tf.round(original * scale), 1.0, target),
                   tf.int32)
  image = normalize(tf.image.resize(images, scaled))
  image = tf.pad(image, [[0, 0], [0, size[0] - scaled[0]],
                         [0, size[1] - scaled[1]], [0, 0]])
  return tf.ensure_shape(image, [None, *size, 3]), scale


def center_crop_and_resize(images, size):
  """uint8 [N, h, w, 3] -> float32 [N, *size, 3]: the central square of
  S / (S + 32) of the short side, resized and normalised."""
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  fraction = size[0] / (size[0] + CROP_PADDING)
  side = tf.maximum(tf.cast(
      fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32), 1)
  top, left = (height - side + 1) // 2, (width - side + 1) // 2
  crop = images[:, top:top + side, left:left + side]
  image = normalize(tf.image.resize(crop, size))
  return tf.ensure_shape(image, [None, *size, 3])


def decode_image(encoded):
  """An encoded image -> uint8 [h, w, 3] (grey gets 3 channels, alpha and
  later animation frames are dropped)."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  return tf.ensure_shape(image, [None, None, 3])


class ServingModule(tf.Module):
  """The serving functions of a detector or classifier (see module doc).

  Args:
    model: a `RetinaNet` or a classifier with a fixed input size.
    fold: fold BatchNorm into the convolutions.
    dtype: compute dtype of the network ('float32', 'bfloat16'); default
      the model's. Needs `fold` (the folded copy is built in that dtype).
    jit_compile: compile the network and postprocessing with XLA.
    top_k: classification top-k outputs (at most the number of classes).
  """

  def __init__(self, model, fold=True, dtype=None, jit_compile=False,
               top_k=5):
    super().__init__(name='serving')
    self.is_detector = isinstance(model, RetinaNet)
    self.image_size = tuple(model.inputs[0].shape[1:3])
    if None in self.image_size:
      raise ValueError(f'{model.name}: serving needs a fixed input size, got '
                       f'{model.inputs[0].shape}.')
    if dtype is not None and not fold:
      raise ValueError('dtype needs fold=True.')
    self.network = fold_batchnorm(model, dtype) if fold else model
    if self.is_detector:
      self._postprocess = model.postprocess
      slots = model.settings['max_detections']
      shapes = {'boxes': ([slots, 4], tf.float32),
                'scores': ([slots], tf.float32),
                'classes': ([slots], tf.int32),
                'num_detections': ([], tf.int32)}
    else:
      classes = model.outputs[0].shape[-1]
      self.top_k = min(top_k, classes)
      shapes = {'logits': ([classes], tf.float32),
                'probabilities': ([classes], tf.float32),
                'top_k_classes': ([self.top_k], tf.int32),
                'top_k_probabilities': ([self.top_k], tf.float32)}
    # Per image, without the batch dimension.
    self.output_spec = {k: tf.TensorSpec(*v) for k, v in shapes.items()}
    self._network_fn = tf.function(
        self._network_outputs, jit_compile=jit_compile,
        input_signature=[tf.TensorSpec([None, *self.image_size, 3])])
    self.serve_images = tf.function(
        self._serve_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                       name='images')])
    self.serve_image_bytes = tf.function(
        self._serve_image_bytes,
        input_signature=[tf.TensorSpec([None], tf.string,
                                       name='image_bytes')])
    self.serve_tf_examples = tf.function(
        self._serve_tf_examples,
        input_signature=[tf.TensorSpec([None], tf.string,
                                       name='serialized_examples')])

  def signatures(self):
    """{signature key: concrete function} for `tf.saved_model.save`."""
    return dict(zip(SIGNATURE_KEYS, (
        self.serve_images.get_concrete_function(),
        self.serve_image_bytes.get_concrete_function(),
        self.serve_tf_examples.get_concrete_function())))

  def _network_outputs(self, images):
    """Normalised float32 [N, S, S, 3] -> outputs (boxes in model-input
    pixels)."""
    outputs = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32),
                                    self.network(images, training=False))
    if self.is_detector:
      return self._detect_each(outputs)
    probabilities = tf.nn.softmax(outputs)
    top = tf.math.top_k(probabilities, self.top_k)
    return {'logits': outputs, 'probabilities': probabilities,
            'top_k_classes': top.indices, 'top_k_probabilities': top.values}

  def _detect_each(self, outputs):
    """Postprocesses one image at a time: a static batch of 1 keeps the
    shapes `postprocess` needs static (a dynamic batch loses them)."""
    def one(image_outputs):
      detections = self._postprocess(
          tf.nest.map_structure(lambda t: t[None], image_outputs))
      return tf.nest.map_structure(lambda t: t[0], detections)
    return tf.map_fn(one, outputs, fn_output_signature=self.output_spec)

  def _predict(self, images):
    """The network on a normalised batch; an empty batch (which the conv
    kernels reject) gives empty outputs."""
    def empty():
      return {k: tf.zeros([0, *s.shape], s.dtype)
              for k, s in self.output_spec.items()}
    return tf.cond(tf.shape(images)[0] > 0,
                   lambda: self._network_fn(images), empty)

  def _preprocess(self, images):
    """uint8 [N, h, w, 3] -> (normalised float32 [N, S, S, 3], info
    float32 [N, 3]: height, width and scale of the input images)."""
    images = check_size(images)
    if self.is_detector:
      image, scale = resize_and_pad(images, self.image_size)
    else:
      image, scale = center_crop_and_resize(images, self.image_size), 1.0
    info = tf.concat([tf.cast(tf.shape(images)[1:3], tf.float32), [scale]], 0)
    return image, tf.tile(info[None], [tf.shape(images)[0], 1])

  def _finish(self, outputs, info):
    """Detection boxes back to the pixels of each input image."""
    if not self.is_detector:
      return outputs
    limits = tf.tile(info[:, :2], [1, 2])[:, None, :]
    boxes = outputs['boxes'] / info[:, 2, None, None]
    return {**outputs, 'boxes': tf.clip_by_value(boxes, 0.0, limits)}

  def _serve_images(self, images):
    image, info = self._preprocess(images)
    return self._finish(self._predict(image), info)

  def _serve_image_bytes(self, image_bytes):
    def one(encoded):
      image, info = self._preprocess(decode_image(encoded)[None])
      return image[0], info[0]
    image, info = tf.map_fn(one, image_bytes, fn_output_signature=(
        tf.TensorSpec([*self.image_size, 3], tf.float32),
        tf.TensorSpec([3], tf.float32)))
    return self._finish(self._predict(image), info)

  def _serve_tf_examples(self, serialized_examples):
    features = tf.io.parse_example(
        serialized_examples,
        {'image/encoded': tf.io.FixedLenFeature([], tf.string)})
    return self._serve_image_bytes(features['image/encoded'])


def write_directory_atomically(path, write, overwrite=False):
  """Calls `write(staging)` on a fresh directory next to `path`, then renames
  it to `path`: `path` never holds a partial result. An existing `path` is
  an error, or with `overwrite` replaced (renamed aside, then removed)."""
  path = os.path.abspath(os.fspath(path))
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f'{path} exists; pass overwrite=True to replace '
                          'it.')
  parent, name = os.path.split(path)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.tmp-')
  try:
    write(staging)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp made it private
    if os.path.exists(path):
      aside = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.old-')
      os.rename(path, os.path.join(aside, name))
      os.rename(staging, path)
      shutil.rmtree(aside)
    else:
      os.rename(staging, path)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def export_saved_model(model, export_dir, overwrite=False, extra_files=None,
                       **module_args):
  """Writes `model` with its serving signatures to `export_dir`.

  Args:
    model: a `RetinaNet` or a classifier.
    export_dir: the SavedModel directory to create (atomically, see
      `write_directory_atomically`).
    overwrite: replace an existing `export_dir`.
    extra_files: {file name: text} written to `export_dir/assets.extra/`.
    **module_args: `ServingModule` options (fold, dtype, jit_compile,
      top_k).

  Returns:
    The `ServingModule` that was saved.
  """
  if os.path.exists(export_dir) and not overwrite:
    raise FileExistsError(f'{export_dir} exists; pass overwrite=True to '
                          'replace it.')
  module = ServingModule(model, **module_args)

  def write(directory):
    tf.saved_model.save(
        module, directory, signatures=module.signatures(),
        # Serving needs no gradients; tracing those of swish is slow.
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    if extra_files:
      os.makedirs(os.path.join(directory, 'assets.extra'))
      for name, text in extra_files.items():
        with open(os.path.join(directory, 'assets.extra', name), 'w') as f:
          f.write(text)

  write_directory_atomically(export_dir, write, overwrite)
  return module
