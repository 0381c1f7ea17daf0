"""TFLite export of a detector or classifier (built for the Mobile variants
and 49S; any model converts).

    tflite_bytes = convert_to_tflite(model)
    write_tflite(tflite_bytes, 'retinanet.tflite')

The TFLite model takes one uint8 [1, S, S, 3] image already at the model's
input size (for detection, scale it to fit and pad at the bottom right as
`saved_model.resize_and_pad` does) and normalises it inside. Outputs:
  detection       boxes float32 [1, A, 4] (ymin, xmin, ymax, xmax) decoded
                  from every anchor, in input pixels, clipped; scores
                  float32 [1, A, C - 1] (sigmoid; column k is class k + 1,
                  background dropped). Score thresholding and NMS are left
                  to the app (the TFLite builtins cannot run our NMS).
  classification  logits float32 [1, C]; probabilities float32 [1, C].
BatchNorm is folded into the convolutions first (`fold_batchnorm`).
"""

import os
import tempfile

import keras
import tensorflow as tf

from spinenet_tf.detection import box_coder
from spinenet_tf.io_utils import atomic_write
from spinenet_tf.export.fold_batchnorm import fold_batchnorm
from spinenet_tf.export.saved_model import normalize
from spinenet_tf.models.detector import Detector
from spinenet_tf.models.retinanet import RetinaNet


def _tflite_function(model):
  """The tf.function that gets converted (see module doc), on a folded copy
  of `model`."""
  if isinstance(model, Detector) and not isinstance(model, RetinaNet):
    raise ValueError(f'TFLite export takes a RetinaNet or a classifier, not '
                     f'{type(model).__name__} {model.name!r}.')
  network = fold_batchnorm(model)
  size = tuple(model.inputs[0].shape[1:3])
  spec = tf.TensorSpec([1, *size, 3], tf.uint8, name='image')

  if isinstance(model, RetinaNet):
    anchors = tf.constant(model.anchors)

    @tf.function(input_signature=[spec])
    def detect(image):
      class_logits, box_deltas = model.flatten_outputs(
          network(normalize(image)))
      boxes = box_coder.decode_boxes(box_deltas, anchors,
                                     model.settings['box_coder_weights'])
      return {'boxes': box_coder.clip_boxes(boxes, size),
              'scores': tf.sigmoid(class_logits[..., 1:])}
    return detect, network

  @tf.function(input_signature=[spec])
  def classify(image):
    logits = network(normalize(image))
    return {'logits': logits, 'probabilities': tf.nn.softmax(logits)}
  return classify, network


def convert_to_tflite(model):
  """The TFLite flatbuffer (bytes) of `model`, builtin ops only, float32."""
  function, network = _tflite_function(model)
  # Through a SavedModel written by Keras's ExportArchive: it tracks the
  # variables so that the converter can freeze them into constants
  # (from_concrete_functions would leave uninitialised variables).
  archive = keras.export.ExportArchive()
  archive.track(network)
  archive.add_endpoint('serving_default', function)
  with tempfile.TemporaryDirectory() as directory:
    archive.write_out(directory, verbose=False,
                      options=tf.saved_model.SaveOptions(
                          experimental_custom_gradients=False))
    return tf.lite.TFLiteConverter.from_saved_model(directory).convert()


# Bytes 4..8 of a TFLite flatbuffer: its file identifier.
TFLITE_IDENTIFIER = b'TFL3'


def check_tflite_destination(path, overwrite=False):
  """Refuses a `path` that exists, unless `overwrite` and it is a TFLite
  file (an earlier export): a folder or another file is never replaced."""
  if not tf.io.gfile.exists(path):
    return
  if tf.io.gfile.isdir(path):
    raise IsADirectoryError(f'{path} is a folder; give a file name for the '
                            'TFLite model.')
  if not overwrite:
    raise FileExistsError(f'{path} exists; replace it with overwrite=True '
                          '(--overwrite).')
  with tf.io.gfile.GFile(path, 'rb') as f:
    head = f.read(8)
  if head[4:8] != TFLITE_IDENTIFIER:
    raise FileExistsError(f'{path} is not a TFLite model; an overwrite '
                          'replaces only an earlier one: choose another file '
                          'name.')


def write_tflite(tflite_bytes, path, overwrite=False):
  """Writes the flatbuffer to `path` atomically (tf.io.gfile: local or
  gs://; a staging file next to it, renamed over `path`); an existing
  `path` only with `overwrite` (`check_tflite_destination`)."""
  path = os.fspath(path)
  check_tflite_destination(path, overwrite)
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  atomic_write(path, tflite_bytes)
