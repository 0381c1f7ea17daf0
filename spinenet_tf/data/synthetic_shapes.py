"""A built-in synthetic detection dataset: coloured shapes on textures.

Each image holds 1..6 rectangles, ellipses and triangles (class ids 1, 2, 3;
0 is background, so models use NUM_CLASSES = 4 class slots) of several sizes
and random saturated colours, some overlapping, on a noise, gradient or
stripe background. A box is tight around the visible pixels of its shape;
shapes hidden more than half are not placed. Everything is deterministic
in the seed: image i of a split depends only on (seed, split, i).

The dataset is written as JPEG tf.Examples in Model Garden's detection
format (`detection_records`), so training and evaluation read it through
the same record path as COCO:

    write_synthetic_dataset('/tmp/shapes', num_train=512, num_val=64)
    ds = build_detection_dataset('synthetic', data_dir='/tmp/shapes', ...)
"""

import json
import math
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from spinenet_tf.data import detection_records, skipping, tfrecord_reader

CLASS_NAMES = ('background', 'rectangle', 'ellipse', 'triangle')
NUM_CLASSES = len(CLASS_NAMES)
SPLITS = ('train', 'validation')
INFO_FILE = 'info.json'
CLASS_NAMES_FILE = 'class_names.txt'  # line i + 1: class id i
_MAX_HIDDEN = 0.5  # largest fraction of a placed shape a later one may hide
_MIN_PIXELS = 16


def muted_colour(rng):
  """A greyish float (r, g, b), for backgrounds."""
  grey = rng.uniform(60, 190)
  return np.clip(grey + rng.normal(0, 20, 3), 0, 255)


def saturated_colour(rng):
  """A bright uint8 (r, g, b), one or two channels high."""
  colour = rng.uniform(0, 90, 3)
  colour[rng.integers(3)] = rng.uniform(200, 255)
  if rng.random() < 0.5:
    colour[rng.integers(3)] = rng.uniform(150, 255)
  return np.round(colour).astype(np.uint8)


def _background(rng, height, width):
  """Noise, a linear gradient or stripes, in muted colours, plus noise."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  angle = rng.uniform(0, math.pi)
  along = y * math.sin(angle) + x * math.cos(angle)
  a, b = muted_colour(rng), muted_colour(rng)
  kind = rng.integers(3)
  if kind == 0:
    t = np.full((height, width), 0.5, np.float32)
  elif kind == 1:
    t = (along - along.min()) / max(along.max() - along.min(), 1.0)
  else:
    t = (np.sin(along * 2 * math.pi / rng.uniform(8, 40)) > 0).astype(
        np.float32)
  image = a + (b - a) * t[..., None]
  image += rng.normal(0, rng.uniform(3, 15), (height, width, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def shape_mask(rng, shape, h, w):
  """Bool mask [h, w] of a 'rectangle', 'ellipse' or 'triangle' filling
  the box (a triangle's apex is at a random point of the top or, upside
  down, the bottom edge)."""
  y, x = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
  if shape == 'rectangle':
    return np.ones((h, w), bool)
  if shape == 'ellipse':
    return ((y - h / 2) / (h / 2))**2 + ((x - w / 2) / (w / 2))**2 <= 1.0
  apex = (0.0, rng.uniform(0, w))
  left, right = (h, 0.0), (h, float(w))
  if rng.random() < 0.5:  # upside down
    apex, left, right = (h, apex[1]), (0.0, 0.0), (0.0, float(w))
  corners = (apex, left, right)
  cy, cx = np.mean(corners, axis=0)
  mask = np.ones((h, w), bool)
  for (y0, x0), (y1, x1) in zip(corners, corners[1:] + corners[:1]):
    side = (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)
    inner = (x1 - x0) * (cy - y0) - (y1 - y0) * (cx - x0)
    mask &= side * np.sign(inner) >= 0
  return mask


def _shape_mask(rng, class_id, size, height, width):
  """Mask [h, w] of one shape and its top-left (y, x) in the image."""
  h = max(3, int(size * rng.uniform(0.6, 1.0)))
  w = max(3, int(size * rng.uniform(0.6, 1.0)))
  if rng.random() < 0.5:
    h, w = w, h
  h, w = min(h, height), min(w, width)
  mask = shape_mask(rng, CLASS_NAMES[class_id], h, w)
  top, left_edge = rng.integers(0, height - h + 1), rng.integers(
      0, width - w + 1)
  return mask, (top, left_edge)


def draw_scene(rng, height, width, num_objects=None):
  """Draws one image.

  Args:
    rng: a numpy Generator.
    height, width: image size.
    num_objects: shapes to place (default 1..6 at random); fewer if they
      cannot be placed without hiding others.

  Returns:
    image uint8 [H, W, 3]; boxes int [N, 4] (ymin, xmin, ymax, xmax) pixel
    edges, tight around the visible pixels; classes int [N] in 1..3;
    owner int [H, W]: 0 background, i + 1 where object i is visible.
  """
  image = _background(rng, height, width)
  owner = np.zeros((height, width), np.int32)
  classes, areas = [], []
  if num_objects is None:
    num_objects = int(rng.integers(1, 7))
  short = min(height, width)
  for _ in range(num_objects * 10):
    if len(classes) == num_objects:
      break
    class_id = int(rng.integers(1, NUM_CLASSES))
    size = short * rng.choice([0.1, 0.2, 0.3, 0.45]) * rng.uniform(0.8, 1.2)
    mask, (top, left) = _shape_mask(rng, class_id, size, height, width)
    region = owner[top:top + mask.shape[0], left:left + mask.shape[1]]
    visible = np.bincount(owner.ravel(), minlength=len(classes) + 1)[1:]
    hidden = np.bincount(region[mask], minlength=len(classes) + 1)[1:]
    if mask.sum() < _MIN_PIXELS or np.any(visible - hidden < np.maximum(
        (1 - _MAX_HIDDEN) * np.array(areas), _MIN_PIXELS)):
      continue
    region[mask] = len(classes) + 1
    image[top:top + mask.shape[0], left:left + mask.shape[1]][mask] = (
        saturated_colour(rng))
    classes.append(class_id)
    areas.append(mask.sum())
  boxes = np.zeros((len(classes), 4), np.int64)
  for i in range(len(classes)):
    ys, xs = np.nonzero(owner == i + 1)
    boxes[i] = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
  return image, boxes, np.array(classes, np.int64), owner


def scene_example(scene, source_id):
  """A square scene (image, boxes, classes, owner) as a JPEG tf.Example;
  each object's area is its visible pixel count, its mask (a PNG) its
  visible pixels."""
  image, boxes, classes, owner = scene
  size = image.shape[0]
  areas = np.bincount(owner.ravel(), minlength=len(classes) + 1)[1:]
  encoded = tf.io.encode_jpeg(image, quality=95,
                              chroma_downsampling=False).numpy()
  masks = [tf.io.encode_png(((owner == i + 1) * 255).astype(np.uint8)[
      ..., None]).numpy() for i in range(len(classes))]
  return detection_records.make_example(
      encoded, size, size, boxes / size, classes, source_id=source_id,
      areas=areas, masks=masks)


def file_pattern(directory, split):
  """The TFRecord glob of a split."""
  return os.path.join(directory, f'{split}-*.tfrecord')


def write_synthetic_dataset(directory, num_train=512, num_val=64,
                            image_size=256, seed=0, examples_per_shard=256):
  """Writes train/validation TFRecord shards, info.json and class_names.txt
  (the format of scripts/predict.py --class_names) to `directory`.

  Source ids are 1.. for train and 1_000_001.. for validation. Returns
  {split: [files]}.
  """
  return write_dataset(
      directory, lambda rng, source_id: scene_example(
          draw_scene(rng, image_size, image_size), source_id),
      CLASS_NAMES, (num_train, num_val), {'image_size': image_size,
                                          'seed': seed}, examples_per_shard)


def write_dataset(directory, make_example, class_names, counts, info,
                  examples_per_shard):
  """Writes a synthetic dataset: `counts` (train, validation) records
  `make_example(rng, source_id)`, the rng seeded by (info['seed'], split,
  index); info.json holds class_names, num_classes, `info` and the counts.
  Returns {split: [files]}."""
  os.makedirs(directory, exist_ok=True)
  # Written aside, then moved in with info.json last: processes writing the
  # same dataset at once (the workers of a multi-worker run) never read a
  # half-written file.
  staging = tempfile.mkdtemp(prefix='.writing-', dir=directory)
  try:
    files = {}
    for index, (split, count) in enumerate(zip(SPLITS, counts)):
      first_id = 1 + 1_000_000 * index
      examples = (make_example(  # map order fixed: same bytes each run
          np.random.default_rng([info['seed'], index, i]),
          first_id + i).SerializeToString(deterministic=True)
                  for i in range(count))
      files[split] = [os.path.join(directory, os.path.basename(path))
                      for path in detection_records.write_tfrecords(
                          os.path.join(staging, split), examples,
                          num_shards=max(1, math.ceil(
                              count / examples_per_shard)))]
    info = {'class_names': list(class_names), 'num_classes': len(class_names),
            **info, 'num_examples': dict(zip(SPLITS, counts))}
    with open(os.path.join(staging, INFO_FILE), 'w') as f:
      json.dump(info, f, indent=2)
    with open(os.path.join(staging, CLASS_NAMES_FILE), 'w') as f:
      f.write('\n'.join(class_names) + '\n')
    names = sorted(os.listdir(staging), key=lambda name: name == INFO_FILE)
    for name in names:
      os.replace(os.path.join(staging, name), os.path.join(directory, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return files


def write_sample_images(directory, sizes, seed=0, draw=None):
  """Writes one PNG scene per (height, width) in `sizes`, not drawn from
  either split (their rng is seeded apart); returns the paths. `draw`:
  (rng, height, width) -> (image, ...), this module's `draw_scene` by
  default."""
  draw = draw or draw_scene
  os.makedirs(directory, exist_ok=True)
  paths = []
  for i, (height, width) in enumerate(sizes):
    image = draw(np.random.default_rng([seed, len(SPLITS), i]), height,
                 width)[0]
    paths.append(os.path.join(directory, f'sample_{i:02d}.png'))
    tf.io.write_file(paths[-1], tf.io.encode_png(image))
  return paths


def read_info(directory):
  """The info.json of a written dataset; a clear error if there is none."""
  path = os.path.join(directory, INFO_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'No synthetic dataset in {directory!r}: write one with '
        'write_synthetic_dataset() or spinenet-make-dataset '
        '(scripts/make_synthetic_dataset.py).')
  with open(path) as f:
    return json.load(f)


def load_examples(directory, split='train'):
  """The records of a split, in order, as example dicts (the reader; a
  damaged record is skipped and logged, see `tfrecord_reader`)."""
  read_info(directory)
  files = sorted(tf.io.gfile.glob(file_pattern(directory, split)))
  counter = skipping.SkipCounter()
  files = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string))
  return files.flat_map(lambda path: tfrecord_reader.read_file(
      path, counter)).map(detection_records.decode_example)
