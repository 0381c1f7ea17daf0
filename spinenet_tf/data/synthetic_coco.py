"""The built-in synthetic datasets in COCO format: a folder of JPEGs per
split and a COCO annotation JSON, what labelling tools export.

    write_coco_dataset('/tmp/shapes_coco', synthetic_shapes, num_train=64)
    # /tmp/shapes_coco/train/000001.jpg ...
    # /tmp/shapes_coco/annotations/instances_train.json (and _validation)

The scenes are those of the module's TFRecord dataset with the same seed
(image i of a split from the same rng, the same JPEG bytes, source ids
1.. and 1_000_001..). Each object's segmentation is its visible pixels:
polygons traced along the pixel edges (contourpy, matplotlib's contour
library), or, for a region with a hole (the scenes' rings, a shape that a
later one splits around), its RLE; bbox is tight around the visible
pixels and area their count.
"""

import json
import os

import contourpy
import numpy as np
from pycocotools import mask as mask_utils
import tensorflow as tf

from spinenet_tf import io_utils
from spinenet_tf.data.synthetic_shapes import SPLITS

ANNOTATIONS_DIR = 'annotations'


def annotation_file(directory, split):
  """The COCO JSON of a split."""
  return os.path.join(directory, ANNOTATIONS_DIR, f'instances_{split}.json')


def _signed_area(points):
  x, y = points[:, 0], points[:, 1]
  return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def segmentation(mask):
  """COCO segmentation of a bool mask [H, W]: polygons [[x0, y0, x1, ...]]
  of its outlines, or a compressed RLE where it has a hole (a polygon list
  cannot hold one)."""
  padded = np.pad(mask, 1).astype(np.float64)
  lines = contourpy.contour_generator(
      z=padded, line_type=contourpy.LineType.Separate).lines(0.5)
  # Padded grid point p is pixel p - 1, whose centre is at p - 0.5.
  outlines = [line - 0.5 for line in lines if len(line) >= 4]
  areas = [_signed_area(line) for line in outlines]
  if outlines and all(np.sign(a) == np.sign(areas[0]) for a in areas):
    return [[round(float(v), 2) for v in line[:-1].ravel()]
            for line in outlines]
  rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
  return {'size': list(rle['size']), 'counts': rle['counts'].decode()}


def scene_annotations(boxes, classes, owner, image_id, first_id):
  """COCO annotations (ids from `first_id`) of a drawn scene."""
  annotations = []
  for k, (box, class_id) in enumerate(zip(boxes, classes)):
    ymin, xmin, ymax, xmax = (int(v) for v in box)
    visible = owner == k + 1
    annotations.append({
        'id': first_id + k, 'image_id': image_id, 'category_id': int(class_id),
        'bbox': [xmin, ymin, xmax - xmin, ymax - ymin],
        'area': int(visible.sum()), 'iscrowd': 0,
        'segmentation': segmentation(visible)})
  return annotations


def write_coco_dataset(directory, module, num_train=64, num_val=16,
                       image_size=256, seed=0):
  """Writes `module`'s scenes (synthetic_shapes or synthetic_scenes) as
  JPEG folders `train/`, `validation/` and their COCO JSONs (written last,
  atomically); returns {split: annotation file}."""
  written = {}
  for index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
    folder = os.path.join(directory, split)
    os.makedirs(folder, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
      image_id = 1 + 1_000_000 * index + i
      image, boxes, classes, owner = module.draw_scene(
          np.random.default_rng([seed, index, i]), image_size,
          image_size)[:4]
      name = f'{image_id:07d}.jpg'
      io_utils.atomic_write(os.path.join(folder, name), tf.io.encode_jpeg(
          image, quality=95, chroma_downsampling=False).numpy())
      images.append({'id': image_id, 'file_name': name,
                     'height': image_size, 'width': image_size})
      annotations += scene_annotations(boxes, classes, owner, image_id,
                                  len(annotations) + 1)
    categories = [{'id': i, 'name': name, 'supercategory': 'shape'}
                  for i, name in enumerate(module.CLASS_NAMES) if i > 0]
    path = annotation_file(directory, split)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    io_utils.atomic_write(path, json.dumps(
        {'info': {'description': f'{module.__name__} seed {seed}'},
         'images': images, 'annotations': annotations,
         'categories': categories}))
    written[split] = path
  return written
