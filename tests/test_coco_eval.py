"""COCO evaluation: hand-computed metrics, padding, annotation files, results
JSON, and Model Garden's COCOEvaluator on a random case."""

import json

import numpy as np
import tensorflow as tf
import pytest
from pycocotools import coco

from spinenet_tf.detection import coco_eval

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
# (ymin, xmin, ymax, xmax): a small (20x20), a medium (60x50) and a large
# (200x150) object on image 1, a medium one on image 2.
GT_BOXES = [[[10, 20, 30, 40], [100, 100, 160, 150], [200, 300, 400, 450]],
            [[50, 60, 110, 120]]]
GT_CLASSES = [[1, 3, 90], [3]]


def _pad(rows, length, value):
  """Per-image lists -> one padded [B, length, ...] array."""
  shape = np.shape(value)
  out = np.full((len(rows), length) + shape, value, dtype=float)
  for i, row in enumerate(rows):
    if len(row):
      out[i, :len(row)] = row
  return out


def _groundtruths(boxes=GT_BOXES, classes=GT_CLASSES, source_ids=(1, 2),
                  length=5, **extra):
  return {'source_id': np.array(source_ids),
          'height': np.full(len(source_ids), 480),
          'width': np.full(len(source_ids), 640),
          'boxes': _pad(boxes, length, [0.0] * 4),
          'classes': _pad(classes, length, -1).astype(np.int32), **extra}


def _detections(boxes, classes, scores, source_ids=(1, 2), length=8):
  return {'source_id': np.array(source_ids),
          'boxes': _pad(boxes, length, [0.0] * 4),
          'classes': _pad(classes, length, -1).astype(np.int32),
          'scores': _pad(scores, length, 0.0),
          'num_detections': np.array([len(c) for c in classes])}


def _evaluate(groundtruths, detections, **kwargs):
  evaluator = coco_eval.CocoEvaluator(**kwargs)
  evaluator.update(groundtruths, detections)
  return evaluator.result()


def _perfect():
  return _detections(GT_BOXES, GT_CLASSES, [[0.9, 0.8, 0.7], [0.6]])


def test_perfect_predictions_score_one():
  metrics = _evaluate(_groundtruths(), _perfect())
  assert set(metrics) == set(coco_eval.METRICS)
  for name in coco_eval.METRICS:
    assert metrics[name] == pytest.approx(1.0, abs=1e-12), name


def _shift_x(box, fraction):
  ymin, xmin, ymax, xmax = box
  shift = fraction * (xmax - xmin)
  return [ymin, xmin + shift, ymax, xmax + shift]


@pytest.mark.parametrize('fraction', [0.1, 0.3])
def test_shifted_boxes_pass_fewer_iou_thresholds(fraction):
  # A box shifted sideways by f of its width has IoU (1 - f) / (1 + f) with
  # the original (0.818 for 0.1, 0.538 for 0.3): every detection matches at
  # exactly the thresholds <= IoU, so AP = AR = (that count) / 10.
  boxes = [[_shift_x(b, fraction) for b in image] for image in GT_BOXES]
  metrics = _evaluate(_groundtruths(), _detections(
      boxes, GT_CLASSES, [[0.9, 0.8, 0.7], [0.6]]))
  iou = (1 - fraction) / (1 + fraction)
  expected_ap = np.mean(IOU_THRESHOLDS <= iou)  # 0.7 and 0.1
  assert metrics['AP'] == pytest.approx(expected_ap, abs=1e-12)
  assert metrics['ARmax100'] == pytest.approx(expected_ap, abs=1e-12)
  assert metrics['AP50'] == pytest.approx(1.0, abs=1e-12)
  assert metrics['AP75'] == pytest.approx(float(iou >= 0.75), abs=1e-12)


@pytest.mark.parametrize('false_positive_score, precision', [(0.5, 1.0),
                                                              (0.95, 0.5)])
def test_missed_object_and_false_positive(false_positive_score, precision):
  # One class, one object per image; the object of image 1 is found (score
  # 0.9), the one of image 2 is missed and a box elsewhere on it is wrong.
  # Recall reaches 0.5: 51 of COCO's 101 recall points, at precision 1 if the
  # hit outranks the false positive, else 1/2.
  groundtruths = _groundtruths([[[10, 10, 110, 110]], [[10, 10, 110, 110]]],
                               [[1], [1]])
  detections = _detections([[[10, 10, 110, 110]], [[300, 300, 400, 400]]],
                           [[1], [1]], [[0.9], [false_positive_score]])
  metrics = _evaluate(groundtruths, detections)
  assert metrics['AP50'] == pytest.approx(precision * 51 / 101, abs=1e-12)
  assert metrics['AP'] == pytest.approx(precision * 51 / 101, abs=1e-12)
  assert metrics['ARmax100'] == pytest.approx(0.5, abs=1e-12)


def test_no_predictions_give_zero():
  detections = _detections([[], []], [[], []], [[], []])
  metrics = _evaluate(_groundtruths(), detections)
  for name in coco_eval.METRICS:
    assert metrics[name] == 0.0, name


def test_padding_is_ignored():
  # Slots past num_detections and class -1 slots carry boxes that would
  # count as false positives with a top score if they were read.
  detections = _perfect()
  detections['boxes'][:, 4:] = [300, 300, 400, 400]
  detections['scores'][:, 3:] = 0.99
  detections['classes'][:, 4:6] = 1
  detections['classes'][0, 3] = -1
  detections['boxes'][0, 3] = [300, 300, 400, 400]
  detections['num_detections'][:] = 4
  groundtruths = _groundtruths()
  groundtruths['boxes'][1, 2] = [5, 5, 5, 50]  # empty box, real class
  groundtruths['classes'][1, 2] = 1
  evaluator = coco_eval.CocoEvaluator()
  evaluator.update(groundtruths, detections)
  assert [r['category_id'] for r in evaluator.results] == [1, 3, 90, 3]
  metrics = evaluator.result()
  assert metrics['AP'] == pytest.approx(1.0, abs=1e-12)
  assert metrics['ARmax100'] == pytest.approx(1.0, abs=1e-12)


def test_areas_and_crowd_regions():
  # Explicit areas decide the size range: calling every object small leaves
  # APm and APl undefined (-1). A crowd region swallows a detection on it
  # without a false positive and is no object to find.
  groundtruths = _groundtruths(
      areas=np.full((2, 5), 100.0),
      is_crowd=np.array([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]))
  metrics = _evaluate(groundtruths, _perfect())
  assert metrics['AP'] == pytest.approx(1.0, abs=1e-12)
  assert metrics['APs'] == pytest.approx(1.0, abs=1e-12)
  assert metrics['APm'] == metrics['APl'] == -1.0


def test_annotation_file_equals_records(tmp_path):
  # The same ground truth written by hand in COCO's JSON form ([x, y, w, h]).
  annotations = [
      {'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [20, 10, 20, 20]},
      {'id': 2, 'image_id': 1, 'category_id': 3, 'bbox': [100, 100, 50, 60]},
      {'id': 3, 'image_id': 1, 'category_id': 90,
       'bbox': [300, 200, 150, 200]},
      {'id': 4, 'image_id': 2, 'category_id': 3, 'bbox': [60, 50, 60, 60]},
      {'id': 5, 'image_id': 3, 'category_id': 3, 'bbox': [0, 0, 10, 10]}]
  for annotation in annotations:
    annotation.update(area=annotation['bbox'][2] * annotation['bbox'][3],
                      iscrowd=0)
  path = tmp_path / 'instances.json'
  path.write_text(json.dumps({
      'images': [{'id': i, 'height': 480, 'width': 640} for i in (1, 2, 3)],
      'categories': [{'id': i, 'name': f'c{i}'} for i in (1, 2, 3, 90)],
      'annotations': annotations}))
  boxes = [[_shift_x(GT_BOXES[0][0], 0.1), GT_BOXES[0][1],
            [0, 0, 50, 50]], [_shift_x(GT_BOXES[1][0], 0.3)]]
  detections = _detections(boxes, [[1, 3, 3], [3]], [[0.9, 0.4, 0.8], [0.6]])
  from_records = _evaluate(_groundtruths(), detections)
  evaluator = coco_eval.CocoEvaluator(annotation_file=str(path))
  evaluator.update(None, detections)  # image 3 is not evaluated
  from_file = evaluator.result()
  assert 0.1 < from_records['AP'] < 0.9
  assert from_file == pytest.approx(from_records, abs=1e-12)


def test_per_category_ap_and_names():
  detections = _detections([GT_BOXES[0][:2], []], [[1, 3], []],
                           [[0.9, 0.8], []])
  metrics = _evaluate(_groundtruths(), detections, per_category=True,
                      category_names={1: 'person', 3: 'car'})
  assert metrics['AP/person'] == pytest.approx(1.0, abs=1e-12)
  assert metrics['AP/car'] == pytest.approx(51 / 101, abs=1e-12)  # 1 of 2
  assert metrics['AP/90'] == 0.0


def test_batches_accumulate_and_reset():
  evaluator = coco_eval.CocoEvaluator()
  perfect = _perfect()
  for j in range(2):
    evaluator.update(
        {k: v[j:j + 1] for k, v in _groundtruths().items()},
        {k: v[j:j + 1] for k, v in perfect.items()})
  assert evaluator.result()['AP'] == pytest.approx(1.0, abs=1e-12)
  assert len(evaluator.results) == 4 and evaluator.num_duplicates == 0
  evaluator.reset()
  with pytest.raises(ValueError, match='No images'):
    evaluator.result()


def test_duplicate_image_ids_are_reported_and_evaluated(caplog):
  # Images 1 and 2 under one id, then a second pass without reset(): each
  # later image gets a fresh negative id, with its own ground truth.
  evaluator = coco_eval.CocoEvaluator()
  with caplog.at_level('WARNING'):
    evaluator.update(_groundtruths(source_ids=(5, 5)),
                     {**_perfect(), 'source_id': np.array([5, 5])})
    evaluator.update(_groundtruths(source_ids=(5, 6)),
                     {**_perfect(), 'source_id': np.array([5, 6])})
  assert evaluator.num_duplicates == 2 and evaluator.duplicate_ids == [5, 5]
  warnings = [r.getMessage() for r in caplog.records
              if 'Duplicate image ids' in r.getMessage()]
  assert len(warnings) == 2 and '(2 duplicates so far)' in warnings[1]
  assert 'fresh negative ids' in warnings[0]
  assert sorted({r['image_id'] for r in evaluator.results}) == [-2, -1, 5, 6]
  assert evaluator.result()['AP'] == pytest.approx(1.0, abs=1e-12)


def test_duplicate_image_ids_with_an_annotation_file_are_skipped(tmp_path):
  path = tmp_path / 'instances.json'
  path.write_text(json.dumps({
      'images': [{'id': 1, 'height': 480, 'width': 640}],
      'categories': [{'id': 1, 'name': 'a'}],
      'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1,
                       'bbox': [20, 10, 20, 20], 'area': 400,
                       'iscrowd': 0}]}))
  detections = _detections([[GT_BOXES[0][0]]], [[1]], [[0.9]],
                           source_ids=(1,))
  evaluator = coco_eval.CocoEvaluator(annotation_file=str(path))
  evaluator.update(None, detections)
  evaluator.update(None, detections)
  assert evaluator.num_duplicates == 1 and len(evaluator.results) == 1
  assert evaluator.result()['AP'] == pytest.approx(1.0, abs=1e-12)


def test_bad_inputs_are_named():
  evaluator = coco_eval.CocoEvaluator()
  with pytest.raises(ValueError, match='groundtruths are for images'):
    evaluator.update(_groundtruths(source_ids=(1, 7)), _perfect())
  with pytest.raises(ValueError, match='groundtruths are needed'):
    evaluator.update(None, _perfect())


def test_results_json_round_trip(tmp_path):
  detections = _perfect()
  detections['source_id'] = np.array([b'1', b'2'])  # TFDS-style byte ids
  results = coco_eval.detections_to_coco(detections)
  assert results[1] == {'image_id': 1, 'category_id': 3,
                        'bbox': [100.0, 100.0, 50.0, 60.0], 'score': 0.8}
  assert [r['image_id'] for r in results] == [1, 1, 1, 2]
  path = tmp_path / 'results.json'
  coco_eval.write_results_json(results, str(path))
  ground_truth = coco.COCO()
  ground_truth.dataset = {'images': [{'id': 1}, {'id': 2}],
                          'categories': [{'id': c} for c in (1, 3, 90)],
                          'annotations': []}
  ground_truth.createIndex()
  loaded = ground_truth.loadRes(str(path))
  assert loaded.loadAnns(2)[0]['bbox'] == [100.0, 100.0, 50.0, 60.0]
  assert [p.name for p in tmp_path.iterdir()] == ['results.json']


def _random_case(rng, first_id, num_images=8, max_objects=10,
                 max_detections=20):
  """A random ground truth and noisy detections (hits, misses, wrong
  classes, false positives, crowds, all sizes) as padded batches."""
  gt = {'source_id': np.arange(first_id, first_id + num_images),
        'height': rng.integers(200, 640, num_images),
        'width': rng.integers(200, 640, num_images),
        'boxes': np.zeros((num_images, max_objects, 4)),
        'classes': np.full((num_images, max_objects), -1),
        'is_crowd': np.zeros((num_images, max_objects), np.int64),
        'areas': np.zeros((num_images, max_objects)),
        'num_detections': np.zeros(num_images, np.int64)}
  det = {'source_id': gt['source_id'],
         'boxes': np.zeros((num_images, max_detections, 4)),
         'classes': np.full((num_images, max_detections), -1),
         'scores': np.zeros((num_images, max_detections)),
         'num_detections': np.zeros(num_images, np.int64)}

  def random_box(height, width):
    size = np.exp(rng.uniform(np.log(8), np.log(300), 2))
    y, x = rng.uniform(0, height - size[0]), rng.uniform(0, width - size[1])
    return np.array([y, x, y + size[0], x + size[1]])

  for i in range(num_images):
    height, width = gt['height'][i], gt['width'][i]
    n = 0 if i == 0 else rng.integers(1, max_objects + 1)
    gt['num_detections'][i] = n
    found = []
    for k in range(n):
      box = random_box(height, width)
      gt['boxes'][i, k], gt['classes'][i, k] = box, rng.choice([1, 2, 5, 7])
      gt['is_crowd'][i, k] = rng.random() < 0.1
      gt['areas'][i, k] = 0.8 * np.prod(box[2:] - box[:2])
      if rng.random() < 0.8:
        jitter = rng.normal(0, 0.1, 4) * np.tile(box[2:] - box[:2], 2)
        wrong = rng.random() < 0.1
        found.append((box + jitter, 3 if wrong else gt['classes'][i, k]))
    found += [(random_box(height, width), rng.choice([1, 2, 5, 7]))
              for _ in range(rng.integers(0, 5))]
    det['num_detections'][i] = len(found)
    for k, (box, cls) in enumerate(found):
      det['boxes'][i, k], det['classes'][i, k] = box, cls
      det['scores'][i, k] = rng.uniform(0.05, 1.0)
  return gt, det


def test_matches_model_garden_coco_evaluator():
  tf = pytest.importorskip('tensorflow')
  coco_evaluator = pytest.importorskip(
      'official.vision.evaluation.coco_evaluator')
  rng = np.random.default_rng(0)
  reference = coco_evaluator.COCOEvaluator(
      annotation_file=None, include_mask=False, need_rescale_bboxes=False)
  ours = coco_eval.CocoEvaluator()
  for batch in range(2):
    gt, det = _random_case(rng, first_id=100 * (batch + 1))
    ours.update({k: v for k, v in gt.items() if k != 'num_detections'}, det)
    reference_gt = {('is_crowds' if k == 'is_crowd' else k): tf.constant(v)
                    for k, v in gt.items()}
    reference.update_state(reference_gt, {
        'source_id': tf.constant(det['source_id']),
        'detection_boxes': tf.constant(det['boxes']),
        'detection_classes': tf.constant(det['classes']),
        'detection_scores': tf.constant(det['scores']),
        'num_detections': tf.constant(det['num_detections'])})
  ours = ours.result()
  expected = reference.result()
  assert 0.1 < ours['AP'] < 0.9
  for name in coco_eval.METRICS:
    assert ours[name] == pytest.approx(float(expected[name]), abs=1e-6), name


def test_results_and_pictures_are_written_through_tf_io_gfile():
  """predict --output_dir=gs://...: the results and the PNGs go through
  tf.io.gfile (TF's ram:// file system stands in for a bucket here)."""
  from spinenet_tf.viz.boxes import save_png
  folder = 'ram://predict-output'
  tf.io.gfile.makedirs(folder)
  coco_eval.write_results_json([{'image_id': 1}], f'{folder}/d.json')
  save_png(np.full((4, 5, 3), 200, np.uint8), f'{folder}/p.png')
  assert sorted(tf.io.gfile.listdir(folder)) == ['d.json', 'p.png']
  with tf.io.gfile.GFile(f'{folder}/d.json') as f:
    assert json.load(f) == [{'image_id': 1}]
  with tf.io.gfile.GFile(f'{folder}/p.png', 'rb') as f:
    assert tf.io.decode_png(f.read()).shape == (4, 5, 3)
