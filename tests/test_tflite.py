"""TFLite export: the interpreter's outputs match the Keras model's."""

import keras
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from spinenet_tf.detection import box_coder
from spinenet_tf.export.saved_model import normalize
from spinenet_tf.export.tflite import convert_to_tflite, write_tflite
from spinenet_tf.models.classifier import build_classifier
from tests.test_export import (SIZE, random_pixels, randomize_weights,
                               tiny_detector)

# Stated tolerances (float32 TFLite vs the unfolded float32 Keras model):
# scores and probabilities 2e-5; logits 1e-4 of their largest magnitude; box
# corners 1e-4 of the image side. Seen at 256x256 (randomized weights):
# scores <= 1.1e-5 and boxes <= 6e-5 x 256 px (49S), logits <= 6e-7
# relative; Mobile-49XS, -49S, -49 detectors: scores <= 8e-7, boxes <= 2e-6
# x 256 px.
SCORE_ATOL = 2e-5
LOGIT_RTOL = 1e-4
BOX_ATOL = 1e-4 * SIZE


def _run(model, image):
  interpreter = Interpreter(model_content=convert_to_tflite(model))
  runner = interpreter.get_signature_runner()
  assert interpreter.get_signature_list() == {'serving_default': {
      'inputs': ['image'], 'outputs': sorted(runner.get_output_details())}}
  assert runner.get_input_details()['image']['dtype'] == np.uint8
  return runner(image=image)


def test_detector_tflite_matches_keras():
  model = tiny_detector()
  image = random_pixels((1, SIZE, SIZE, 3), 3)
  outputs = _run(model, image)
  class_logits, box_deltas = model.flatten_outputs(
      model(normalize(image), training=False))
  boxes = box_coder.clip_boxes(box_coder.decode_boxes(
      box_deltas, model.anchors), (SIZE, SIZE))
  scores = keras.ops.sigmoid(class_logits[..., 1:])
  assert outputs['boxes'].shape == (1, len(model.anchors), 4)
  assert outputs['scores'].shape == (1, len(model.anchors),
                                     model.num_classes - 1)
  np.testing.assert_allclose(outputs['scores'], scores, atol=SCORE_ATOL)
  np.testing.assert_allclose(outputs['boxes'], boxes, atol=BOX_ATOL)
  assert float(np.std(scores)) > 0.01  # the comparison is not trivial


def test_classifier_tflite_matches_keras(tmp_path):
  keras.utils.set_random_seed(0)
  model = randomize_weights(build_classifier(5, '49S', (SIZE, SIZE, 3)))
  image = random_pixels((1, SIZE, SIZE, 3), 4)
  outputs = _run(model, image)
  logits = model(normalize(image), training=False).numpy()
  scale = np.abs(logits).max()
  np.testing.assert_allclose(outputs['logits'], logits,
                             atol=LOGIT_RTOL * scale)
  np.testing.assert_allclose(outputs['probabilities'],
                             keras.ops.softmax(logits), atol=SCORE_ATOL)
  path = tmp_path / 'model.tflite'
  write_tflite(b'tflite', str(path))
  assert path.read_bytes() == b'tflite'
