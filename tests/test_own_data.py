"""Own data: records converted from COCO-format JSON, read with their label
map: class ids the label map lacks are refused, evaluation against the
original JSON equals pycocotools on it, per-class AP by name."""

import json
import logging

import numpy as np
import pytest
import tensorflow as tf
from pycocotools import coco, cocoeval

from spinenet_tf import checkpoints
from spinenet_tf.data import (coco_converter, label_map, synthetic_coco,
                              synthetic_shapes)
from spinenet_tf.data.detection_input import build_detection_dataset
from spinenet_tf.detection import coco_eval
from spinenet_tf.training import config as config_lib
from spinenet_tf.training import strategy as strategy_lib
from spinenet_tf.training.trainer import Trainer
from spinenet_tf.training.detection_eval import evaluate_detector
from spinenet_tf.training.tasks import build_task

SIZE = 64
OFFSET = 4  # the JSON's category ids are 5, 6, 7: remapped to 1, 2, 3


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """Synthetic shapes as COCO JSON with category ids 5..7, converted with
  --remap_categories; (folder, JSON of the validation split)."""
  root = tmp_path_factory.mktemp('own')
  files = synthetic_coco.write_coco_dataset(root / 'coco', synthetic_shapes,
                                            num_train=4, num_val=12,
                                            image_size=SIZE, seed=1)
  for split, path in files.items():
    data = json.loads(open(path).read())
    for item in data['annotations'] + data['categories']:
      key = 'category_id' if 'category_id' in item else 'id'
      item[key] += OFFSET
    with open(path, 'w') as f:
      json.dump(data, f)
    coco_converter.convert_coco(path, root / 'coco' / split,
                                root / 'records' / split,
                                remap_categories=True, num_workers=1)
  return root, files['validation']


def _config(root, annotation_file=None, label_map_file=None):
  label_map_file = label_map_file or root / 'records/train_label_map.json'
  return config_lib.config_from_dict({
      'task': 'detection', 'label_map': str(label_map_file),
      'model': {'backbone': 'mobile-49XS', 'input_size': 128,
                'num_filters': 16, 'num_convs': 1,
                'backbone_kwargs': {'filter_size_scale': 0.25}},
      'train_data': {'source': 'tfrecord',
                     'file_pattern': str(root / 'records/train-*')},
      'eval_data': {'source': 'tfrecord', 'global_batch_size': 4,
                    'file_pattern': str(root / 'records/validation-*'),
                    'annotation_file': annotation_file and str(
                        annotation_file)}})


class GridDetector:
  """Detects fixed boxes (6x6, 4x4, 3x3 and 2x2 grids, the whole image) of every
  class with fixed scores: some hit, some miss, so AP is neither 0 nor 1."""

  def detect(self, images, image_info):
    del images
    cells = [(y / n, x / n, (y + 1) / n, (x + 1) / n)
             for n in (6, 4, 3, 2) for y in range(n) for x in range(n)]
    cells.append((0.0, 0.0, 1.0, 1.0))
    boxes = np.array([c for c in cells for _ in range(3)], np.float32)
    classes = np.tile(np.arange(1, 4, dtype=np.int32), len(cells))
    scores = np.linspace(0.9, 0.1, len(boxes)).astype(np.float32)
    batch = tf.shape(image_info)[0]
    size = tf.tile(tf.cast(image_info[:, 0:1, :], tf.float32), [1, 1, 2])
    return {'boxes': tf.constant(boxes)[None] * size,
            'classes': tf.tile(tf.constant(classes)[None], [batch, 1]),
            'scores': tf.tile(tf.constant(scores)[None], [batch, 1]),
            'num_detections': tf.fill([batch], len(boxes))}


def test_evaluation_against_the_json_equals_pycocotools(converted):
  root, val_json = converted
  task = build_task(_config(root, annotation_file=val_json))
  assert task.config.model['num_classes'] == 4
  evaluator = task.evaluator()
  metrics = evaluate_detector(GridDetector(), task.eval_dataset(),
                              evaluator=evaluator)
  # pycocotools on the user's JSON and the same results.
  results = evaluator.results
  assert {r['category_id'] for r in results} == {5, 6, 7}
  truth = coco.COCO(str(val_json))
  evaluation = cocoeval.COCOeval(truth, truth.loadRes(results), 'bbox')
  evaluation.evaluate()
  evaluation.accumulate()
  evaluation.summarize()
  assert 0.001 < metrics['AP50'] < 0.99  # a comparison of real numbers
  for name, value in zip(coco_eval.METRICS, evaluation.stats):
    assert metrics[name] == pytest.approx(value, abs=1e-12), name
  per_class = {k: v for k, v in metrics.items() if k.startswith('AP/')}
  assert sorted(per_class) == ['AP/ellipse', 'AP/rectangle', 'AP/triangle']
  assert np.mean(list(per_class.values())) == pytest.approx(metrics['AP'])


def test_records_ground_truth_gives_the_same_ap(converted):
  """Without the JSON the records' own boxes are the ground truth: the same
  boxes, so the same AP."""
  root, val_json = converted
  with_json = build_task(_config(root, annotation_file=val_json))
  without = build_task(_config(root))
  metrics = [evaluate_detector(GridDetector(), t.eval_dataset(),
                               evaluator=t.evaluator())
             for t in (with_json, without)]
  assert metrics[0]['AP'] == pytest.approx(metrics[1]['AP'], abs=1e-6)


def test_a_class_id_the_label_map_lacks_is_refused(converted, tmp_path):
  root, _ = converted
  small = tmp_path / 'two_classes.json'
  small.write_text('{"1": "rectangle", "2": "ellipse"}')
  names = label_map.read_label_map(small)
  dataset = build_detection_dataset(
      'tfrecord', False, SIZE, 4, num_classes=names.num_classes,
      file_pattern=str(root / 'records/validation-*'), label_map=names)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'record .*validation-00000-of-00001.tfrecord#\d+ '
                     r'holds class id 3, which label map .*two_classes.json '
                     r'does not have \(its ids: \[1, 2\]\)'):
    for _ in dataset:
      pass
  with pytest.raises(ValueError, match='model.num_classes = 4 disagrees'):
    config_lib.config_from_dict({
        'label_map': str(small),
        'model': {'backbone': 'mobile-49XS', 'input_size': SIZE,
                  'num_classes': 4}})


def test_fine_tuning_restores_all_but_the_class_head(converted, tmp_path,
                                                     caplog):
  """A detector of 6 classes (a converted Model Garden RetinaNet has 91)
  starts a 4-class run: every variable but the class logits restored."""
  root, _ = converted
  config = _config(root)
  source = build_task(config).build_model(num_classes=6)
  path = str(tmp_path / 'six_classes.weights.h5')
  source.save_weights(path)
  config.trainer.init_checkpoint = path
  config.trainer.init_checkpoint_modules = 'all_but_class_head'
  task = build_task(config)
  trainer = Trainer(config, task, strategy_lib.build_strategy('one_device'),
                    str(tmp_path / 'run'))
  with caplog.at_level(logging.INFO):
    trainer.restore()
  model = trainer.model
  logits = {id(w) for w in model.head.class_logits.weights}
  restored = 0
  for target, reference in zip(model.weights, source.weights):
    if id(target) in logits:
      assert target.shape != reference.shape
    else:
      np.testing.assert_array_equal(target.numpy(), reference.numpy())
      restored += 1
  assert restored == len(model.weights) - len(logits) > 100
  line = checkpoints.load_initial_weights(  # the line the trainer logs
      task.build_model(), path, 'all_but_class_head',
      rebuild=lambda n: task.build_model(num_classes=n))
  assert (f'restored {restored} of {len(model.weights)} variables '
          'from') in line
  assert 'the file has 6 classes, the model 4' in line
  config.trainer.init_checkpoint_modules = 'all'
  with pytest.raises(ValueError, match='differ in shape'):
    Trainer(config, build_task(config),
            strategy_lib.build_strategy('one_device'),
            str(tmp_path / 'run_all')).restore()


def test_label_map_files_are_checked(tmp_path):
  path = tmp_path / 'm.json'
  for text, message in [('{"0": "bg"}', 'class id 0 < 1'),
                        ('{"a": "x"}', "class id 'a' is not an integer"),
                        ('[1]', 'expected a JSON object'),
                        ('{"classes": [{"id": 1}]}', 'classes\\[0\\] must be'),
                        ('{', 'not JSON')]:
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
      label_map.read_label_map(path)
  with pytest.raises(FileNotFoundError, match='no such file'):
    label_map.read_label_map(tmp_path / 'missing.json')
