"""COCO box metrics over a dataset (pycocotools), and COCO results JSON.

    evaluator = CocoEvaluator()            # ground truth from the records
    for groundtruths, detections in batches:
      evaluator.update(groundtruths, detections)
    metrics = evaluator.result()           # {'AP': 0.42, 'AP50': ..., ...}

Inputs are numpy batches (anything `np.asarray` takes), boxes (ymin, xmin,
ymax, xmax) in pixels of the ORIGINAL image; they go to COCO as [x, y, width,
height]. Image ids are the `source_id`s (ints, or their byte strings).

Duplicate image ids (an id seen before since `reset()`, or twice in one
batch: records with the same source_id, records without one whose image
bytes are identical, or a second pass without `reset()`) never stop the
evaluation; each is counted (`num_duplicates`, `duplicate_ids`) and logged
(one warning line with the count so far). With ground truth from the
records, the later image is evaluated as a new image under a fresh negative
id (-1, -2, ...; real ids are >= 0), its ground truth and detections
together; in the COCO results it carries that id. With an annotation file
the ground truth is the file's, so the later image is skipped (its
detections are not added).

- groundtruths: source_id [B], height [B], width [B], boxes [B, M, 4],
  classes [B, M]; optional is_crowd [B, M] and areas [B, M] (else the box
  area). Padding (class <= 0 or an empty box) is dropped.
- detections: source_id [B], boxes [B, D, 4], scores [B, D], classes [B, D]
  (-1 padding); optional num_detections [B]. Slots past num_detections or
  with class <= 0 are dropped.

Metrics are pycocotools' 12 `stats` under Model Garden's names (`METRICS`);
-1 means undefined (no ground truth in that area range), as in pycocotools.
Detections of a category absent from the ground truth are not scored, as in
COCO. pycocotools' printing goes to absl logging.
"""

import contextlib
import copy
import io
import json
import os
from collections.abc import Mapping

import numpy as np
from absl import logging
from pycocotools import coco, cocoeval

from spinenet_tf.io_utils import atomic_write

METRICS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'ARmax1', 'ARmax10',
           'ARmax100', 'ARs', 'ARm', 'ARl')


@contextlib.contextmanager
def _printing_to_log(level=logging.DEBUG):
  """Captures pycocotools' stdout and logs it."""
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    yield
  if buffer.getvalue().strip():
    logging.log(level, 'pycocotools:\n%s', buffer.getvalue().rstrip())


def _image_id(source_id):
  if isinstance(source_id, (bytes, np.bytes_)):
    source_id = source_id.decode()
  return int(source_id)


def _xywh(box):
  ymin, xmin, ymax, xmax = (float(v) for v in box)
  return [xmin, ymin, xmax - xmin, ymax - ymin]


def _numpy(batch):
  return {key: np.asarray(value) for key, value in batch.items()}


def _names(category_names):
  """{id: name} from a mapping or a sequence indexed by class id."""
  if category_names is None:
    return {}
  if isinstance(category_names, Mapping):
    return {int(k): str(v) for k, v in category_names.items()}
  return {i: str(name) for i, name in enumerate(category_names)}


def detections_to_coco(detections, category_ids=None, category_names=None):
  """One batch of detections -> COCO results [{image_id, category_id, bbox,
  score}], padding dropped; `category_ids` maps class ids to the category
  ids of the results (default: the same); with `category_names` ({class id:
  name}) each result also has its category_name."""
  category_ids = category_ids or {}
  d = _numpy(detections)
  counts = d.get('num_detections',
                 np.full(len(d['source_id']), d['classes'].shape[1]))
  results = []
  for j, source_id in enumerate(d['source_id']):
    for k in range(int(counts[j])):
      if d['classes'][j, k] > 0:
        class_id = int(d['classes'][j, k])
        results.append({'image_id': _image_id(source_id),
                        'category_id': category_ids.get(class_id, class_id),
                        'bbox': _xywh(d['boxes'][j, k]),
                        'score': float(d['scores'][j, k])})
        if category_names is not None:
          results[-1]['category_name'] = category_names.get(
              class_id, str(class_id))
  return results


def write_results_json(results, path):
  """Writes COCO results (a list of dicts) to `path` (local or gs://)
  atomically."""
  atomic_write(path, json.dumps(results))


def _ground_truth_to_coco(groundtruths, first_id):
  """One batch of ground truth -> (COCO images, COCO annotations)."""
  g = _numpy(groundtruths)
  images, annotations = [], []
  for j, source_id in enumerate(g['source_id']):
    image_id = _image_id(source_id)
    images.append({'id': image_id, 'height': int(g['height'][j]),
                   'width': int(g['width'][j])})
    for k, (box, cls) in enumerate(zip(g['boxes'][j], g['classes'][j])):
      ymin, xmin, ymax, xmax = box
      if cls <= 0 or ymax <= ymin or xmax <= xmin:
        continue
      area = (g['areas'][j, k] if 'areas' in g
              else (ymax - ymin) * (xmax - xmin))
      crowd = int(g['is_crowd'][j, k]) if 'is_crowd' in g else 0
      annotations.append({'id': first_id + len(annotations),
                          'image_id': image_id, 'category_id': int(cls),
                          'bbox': _xywh(box), 'area': float(area),
                          'iscrowd': crowd})
  return images, annotations


def _dataset_coco(dataset):
  with _printing_to_log():
    result = coco.COCO()
    result.dataset = dataset
    result.createIndex()
  return result


class CocoEvaluator:
  """Accumulates ground truth and detections; `result()` runs COCOeval.

  Args:
    annotation_file: a COCO annotation JSON to use as ground truth instead of
      the records; `update` then needs no groundtruths and only the images
      seen in `update` are evaluated.
    category_names: {id: name}, or a sequence indexed by class id (slot 0 is
      background); names the categories and the per-category metrics.
    per_category: also return 'AP/<name>' (IoU 0.5:0.95, all areas) for
      each category with ground truth.
    category_ids: {class id: category id of the annotation file} for
      detections whose classes were renumbered (a label map's
      `annotation_id`); `category_names` are then keyed by class id too.
  """

  def __init__(self, annotation_file=None, category_names=None,
               per_category=False, category_ids=None):
    self.annotation_file = annotation_file
    self.category_ids = dict(category_ids or {})
    self.category_names = {self.category_ids.get(k, k): v for k, v in
                           _names(category_names).items()}
    self.per_category = per_category
    self._file_coco = None
    if annotation_file is not None:
      with _printing_to_log():
        self._file_coco = coco.COCO(os.fspath(annotation_file))
    self.reset()

  def reset(self):
    """Forgets everything seen so far."""
    self.num_duplicates = 0
    self.duplicate_ids = []
    self._fresh_id = 0
    self._image_ids = []
    self._images = []
    self._annotations = []
    self._results = []

  @property
  def results(self):
    """The COCO results accumulated so far (see `write_results_json`)."""
    return list(self._results)

  def _duplicates(self, image_ids):
    """Indices of `image_ids` already seen (or earlier in the batch);
    counted and logged."""
    seen = set(self._image_ids)
    repeated = []
    for j, image_id in enumerate(image_ids):
      if image_id in seen:
        repeated.append(j)
      seen.add(image_id)
    if repeated:
      ids = [image_ids[j] for j in repeated]
      self.num_duplicates += len(ids)
      self.duplicate_ids += ids
      logging.warning(
          'Duplicate image ids %s (%d duplicates so far): %s. Records '
          'without source_id share an id when their image bytes are equal; '
          'a second pass over the data needs reset().', ids[:10],
          self.num_duplicates,
          'skipped (the annotation file holds their ground truth)'
          if self._file_coco is not None else
          'evaluated as new images with fresh negative ids')
    return repeated

  def update(self, groundtruths, detections):
    """Adds one batch; with an annotation file `groundtruths` are unused
    (pass None). Duplicate image ids are handled as the module doc says."""
    image_ids = [_image_id(s) for s in np.asarray(detections['source_id'])]
    if self._file_coco is not None:
      missing = set(image_ids) - set(self._file_coco.getImgIds())
      if missing:
        raise ValueError(f'images {sorted(missing)} are not in '
                         f'{self.annotation_file}.')
    elif groundtruths is None:
      raise ValueError('groundtruths are needed without an annotation_file.')
    else:
      gt_ids = [_image_id(s) for s in np.asarray(groundtruths['source_id'])]
      if gt_ids != image_ids:
        raise ValueError(f'groundtruths are for images {gt_ids}, detections '
                         f'for {image_ids}.')
    repeated = self._duplicates(image_ids)
    detections = _numpy(detections)
    if repeated and self._file_coco is not None:
      keep = [j for j in range(len(image_ids)) if j not in set(repeated)]
      detections = {k: v[keep] for k, v in detections.items()}
      image_ids = [image_ids[j] for j in keep]
    elif repeated:
      groundtruths = _numpy(groundtruths)
      new_ids = np.array(image_ids, np.int64)
      for j in repeated:
        self._fresh_id -= 1
        new_ids[j] = self._fresh_id
      groundtruths['source_id'] = new_ids
      detections['source_id'] = new_ids
      image_ids = new_ids.tolist()
    if self._file_coco is None:
      images, annotations = _ground_truth_to_coco(
          groundtruths, len(self._annotations) + 1)
      self._images += images
      self._annotations += annotations
    self._image_ids += image_ids
    self._results += detections_to_coco(detections, self.category_ids)

  def _ground_truth(self):
    if self._file_coco is not None:
      return self._file_coco
    category_ids = set(self.category_names) | {
        a['category_id'] for a in self._annotations}
    categories = [{'id': i, 'name': self.category_names.get(i, str(i))}
                  for i in sorted(category_ids) if i > 0]
    return _dataset_coco({'images': self._images, 'categories': categories,
                          'annotations': self._annotations})

  def _detections(self, ground_truth):
    if not self._results:  # loadRes cannot take an empty list
      return _dataset_coco({'images': ground_truth.dataset['images'],
                            'categories': ground_truth.dataset['categories'],
                            'annotations': []})
    with _printing_to_log():
      return ground_truth.loadRes(copy.deepcopy(self._results))

  def result(self):
    """COCO metrics of everything seen since `reset()`, as {name: float}."""
    if not self._image_ids:
      raise ValueError('No images to evaluate: call update() first.')
    ground_truth = self._ground_truth()
    evaluation = cocoeval.COCOeval(ground_truth,
                                   self._detections(ground_truth), 'bbox')
    evaluation.params.imgIds = sorted(self._image_ids)
    with _printing_to_log():
      evaluation.evaluate()
      evaluation.accumulate()
    with _printing_to_log(logging.INFO):
      evaluation.summarize()
    metrics = {name: float(v) for name, v in zip(METRICS, evaluation.stats)}
    if self.per_category:
      metrics.update(self._per_category_ap(evaluation, ground_truth))
    return metrics

  def _per_category_ap(self, evaluation, ground_truth):
    # precision: [IoU thresholds, recall points, categories, areas, max dets]
    precision = evaluation.eval['precision'][:, :, :, 0, -1]
    metrics = {}
    for k, category_id in enumerate(evaluation.params.catIds):
      values = precision[:, :, k]
      if (values > -1).any():
        name = self.category_names.get(
            category_id, ground_truth.cats[category_id].get('name',
                                                            category_id))
        metrics[f'AP/{name}'] = float(values[values > -1].mean())
    return metrics
