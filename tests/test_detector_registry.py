"""A second detector plugs in beside RetinaNet through `factory.DETECTORS`
and the `Detector` protocol: the config, the task, the trainer's step and
the export reach it by model.type, with no branch of their own."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from keras import ops

from spinenet_tf.export import fold_batchnorm as fold_lib
from spinenet_tf.export.saved_model import ServingModule
from spinenet_tf.models import factory, retinanet
from spinenet_tf.models.detector import Detector
from spinenet_tf.training import config as config_lib
from spinenet_tf.training import strategy as strategy_lib
from spinenet_tf.training.trainer import Trainer
from tests.test_config_keys_effect import FakeDetection, _run_config


class BoxCountingDetector(Detector, keras.Model):
  """A RetinaNet whose training call also takes ground truth (as a detector
  that samples from it inside its call does), with a loss and an output of
  its own."""
  LOSS_NAMES = (*retinanet.RetinaNet.LOSS_NAMES, 'boxes_seen')

  def __init__(self, detector, **kwargs):
    super().__init__(**kwargs)
    self.detector = detector
    self.image_shape = detector.image_shape
    self.settings = detector.settings

  def call(self, inputs, training=False):
    if not isinstance(inputs, dict):
      return self.detector(inputs, training=training)
    outputs = self.detector(inputs['image'], training=training)
    seen = ops.sum(ops.cast(inputs['classes'] > 0, 'float32'))
    return {**outputs, 'boxes_seen': seen}

  def training_inputs(self, images, labels):
    return {'image': images, 'classes': labels['classes']}

  def training_losses(self, outputs, labels):
    return {**self.detector.training_losses(outputs, labels),
            'boxes_seen': outputs['boxes_seen']}

  def output_spec(self):
    slots = self.settings['max_detections']
    return {**super().output_spec(), 'areas': ([slots], 'float32')}

  def postprocess(self, outputs, detect_fn):
    detections = self.detector.postprocess(outputs, detect_fn)
    boxes = detections['boxes']
    return {**detections, 'areas': (boxes[..., 2] - boxes[..., 0]) *
                                   (boxes[..., 3] - boxes[..., 1])}


def _build_counting(backbone, num_classes, input_shape, **options):
  return BoxCountingDetector(retinanet.build_retinanet(
      backbone, num_classes, input_shape, **options))


@pytest.fixture
def counting(monkeypatch):
  monkeypatch.setitem(factory.DETECTORS, 'counting', factory.DetectorType(
      _build_counting, BoxCountingDetector, retinanet.DEFAULTS))


def _config(model_type):
  config = _run_config()
  return config_lib.config_from_dict(
      {**config.as_dict(), 'model': {**config.model, 'type': model_type}})


def test_model_type_names_the_detector():
  base = _run_config()
  named = _config('retinanet')
  assert type(factory.build_model_from_config(
      {'task': 'detection', 'model': named.model})) is retinanet.RetinaNet
  assert 'type' not in base.model  # absent: RetinaNet, as before
  with pytest.raises(ValueError, match=r"config key model.type must be one "
                     r"of \['maskrcnn', 'retinanet'\], got 'yolo'"):
    _config('yolo')
  with pytest.raises(ValueError, match=r"model.type must be one of "
                     r"\['maskrcnn', 'retinanet'\], got 'yolo'"):
    factory.build_model_from_config(
        {'task': 'detection', 'model': {**base.model, 'type': 'yolo'}})
  with pytest.raises(ValueError, match="unknown config key model.type for "
                     "task 'classification'"):
    config_lib.config_from_dict({
        'task': 'classification', 'model': {
            'type': 'retinanet', 'backbone': 'mobile-49XS',
            'input_size': 128, 'num_classes': 3},
        'train_data': {'source': 'i_naturalist2017'},
        'eval_data': {'source': 'i_naturalist2017'}})


def test_a_second_detector_trains_through_the_task(counting, tmp_path):
  task = FakeDetection(_config('counting'))
  assert task.loss_names == BoxCountingDetector.LOSS_NAMES
  strategy = strategy_lib.build_strategy('one_device')
  with Trainer(task.config, task, strategy, str(tmp_path)) as trainer:
    assert isinstance(trainer.model, BoxCountingDetector)
    iterator = iter(strategy.distribute_datasets_from_function(
        task.train_dataset))
    means, finite = trainer.train_loop_fn()(iterator, tf.constant(1))
    losses = dict(zip(trainer.loss_names, means.numpy()))
  assert bool(finite)
  # The ground truth reached the model's call: 2 images x 2 boxes.
  assert losses['boxes_seen'] == 4.0
  assert np.isfinite(losses['box_loss']) and losses['total_loss'] > 0


def test_a_second_detector_exports_its_outputs(counting, monkeypatch):
  model = factory.build_model_from_config(
      {'task': 'detection', 'model': _config('counting').model})
  folded = []
  monkeypatch.setitem(fold_lib.FOLDERS, BoxCountingDetector, lambda m: (
      folded.append(m) or fold_lib.fold_batchnorm(m.detector)))
  module = ServingModule(model)
  assert folded == [model]  # its own folding, from FOLDERS
  assert module.image_size == (128, 128)
  outputs = module.serve_images(tf.zeros([1, 90, 60, 3], tf.uint8))
  assert set(outputs) == {'boxes', 'scores', 'classes', 'num_detections',
                          'areas'}
  assert outputs['areas'].shape == (1, model.settings['max_detections'])


def test_a_run_of_another_detector_is_not_resumed(counting, tmp_path):
  # A params.yaml written before model.type existed names a RetinaNet.
  recorded = _run_config().as_dict()
  (tmp_path / config_lib.PARAMS_FILE).write_text(yaml.safe_dump(recorded))
  config_lib.check_same_model(_config('retinanet'), str(tmp_path))
  with pytest.raises(ValueError, match="model.type: 'retinanet' -> 'counting'"):
    config_lib.check_same_model(_config('counting'), str(tmp_path))
