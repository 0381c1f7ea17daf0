"""A harder built-in detection dataset: textured shapes in cluttered scenes.

Twelve classes (ids 1..12; NUM_CLASSES = 13 slots with background 0), each
a fixed (shape, texture) pair: shapes rectangle, ellipse, triangle, cross,
ring; textures solid, stripes, checker, dots, gradient. Every shape comes
with two or more textures and every texture with two or more shapes, so a
model must see both. Colours, texture angle and period are random per
object, so colour tells nothing about the class.

A scene holds min_objects..max_objects objects (2..30 by default; fewer
than drawn only where they cannot be placed) whose long side is
log-uniform in 4%..60% of the image's short side (small objects are
common), on a background of smooth muted noise with thin distractor
strokes that are not objects. Later objects hide parts of earlier ones,
at most MAX_HIDDEN (half) of each: an object that would hide more is not
placed. A box is the *visible* extent of its object (tight around its
visible pixels) and a record's area is its visible pixel count.

Deterministic in the seed (image i of a split depends only on (seed,
split, i); the records are byte-identical run to run). Written as the same
JPEG tf.Examples, info.json and class_names.txt as `synthetic_shapes`:

    write_synthetic_dataset('/tmp/scenes', num_train=512, num_val=64)
    ds = build_detection_dataset('synthetic_scenes', data_dir='/tmp/scenes',
                                 ...)
"""

import math

import numpy as np
from PIL import Image

from spinenet_tf import checks
from spinenet_tf.data import synthetic_shapes
from spinenet_tf.viz import boxes as boxes_viz
from spinenet_tf.data.synthetic_shapes import (  # noqa: F401  (the API)
    CLASS_NAMES_FILE, INFO_FILE, SPLITS, file_pattern, load_examples,
    read_info)

DATASET = 'synthetic_scenes'  # info.json 'dataset', the source name
CLASSES = (('rectangle', 'solid'), ('rectangle', 'stripes'),
           ('rectangle', 'checker'), ('ellipse', 'solid'),
           ('ellipse', 'dots'), ('ellipse', 'checker'),
           ('triangle', 'stripes'), ('triangle', 'gradient'),
           ('cross', 'solid'), ('cross', 'dots'),
           ('ring', 'stripes'), ('ring', 'gradient'))
CLASS_NAMES = ('background',) + tuple(f'{s}_{t}' for s, t in CLASSES)
NUM_CLASSES = len(CLASS_NAMES)
SIZE_RANGE = (0.04, 0.6)  # long side / short image side, log-uniform
MAX_HIDDEN = 0.5  # largest fraction of an object later ones may hide
MIN_IMAGE_SIZE = 64
_MIN_SIDE = 4
_MIN_PIXELS = 12


def _mask(rng, shape, h, w):
  """Bool mask [h, w] of a shape filling its box."""
  if shape in ('rectangle', 'ellipse', 'triangle'):
    return synthetic_shapes.shape_mask(rng, shape, h, w)
  y, x = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
  dy, dx = np.abs(y - h / 2) / (h / 2), np.abs(x - w / 2) / (w / 2)
  if shape == 'cross':
    return (dy <= rng.uniform(0.2, 0.35)) | (dx <= rng.uniform(0.2, 0.35))
  radius = dy**2 + dx**2  # ring
  return (radius <= 1.0) & (radius >= rng.uniform(0.45, 0.65)**2)


def _two_colours(rng):
  a, b = (synthetic_shapes.saturated_colour(rng).astype(np.float32)
          for _ in range(2))
  if np.abs(a - b).sum() < 200:
    b = 255 - a
  return a, b


def _texture(rng, texture, h, w, size):
  """uint8 [h, w, 3] of a texture; its period scales with the object."""
  a, b = _two_colours(rng)
  angle = rng.uniform(0, math.pi)
  y, x = np.mgrid[0:h, 0:w].astype(np.float32)
  u = y * math.cos(angle) + x * math.sin(angle)
  v = x * math.cos(angle) - y * math.sin(angle)
  period = max(4.0, size * rng.uniform(0.15, 0.3))
  if texture == 'solid':
    t = np.zeros((h, w), np.float32)
  elif texture == 'stripes':
    t = (u % period) < period / 2
  elif texture == 'checker':
    t = (np.floor(u / period * 2) + np.floor(v / period * 2)) % 2
  elif texture == 'dots':
    t = ((u % period - period / 2)**2 + (v % period - period / 2)**2
         <= (0.3 * period)**2)
  else:  # gradient
    t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
  pixels = a + (b - a) * np.asarray(t, np.float32)[..., None]
  pixels += rng.normal(0, 4, (h, w, 3))
  return np.clip(pixels, 0, 255).astype(np.uint8)


def _strokes(rng, image):
  """Thin polylines in muted or bright colours, drawn in place."""
  height, width = image.shape[:2]
  for _ in range(int(rng.integers(3, 13))):
    colour = (synthetic_shapes.saturated_colour(rng) if rng.random() < 0.5
              else synthetic_shapes.muted_colour(rng))
    radius = rng.uniform(0.5, 1.5)
    points = rng.uniform(0, 1, (int(rng.integers(2, 5)), 2)) * (height, width)
    for (y0, x0), (y1, x1) in zip(points, points[1:]):
      top, left = int(max(0, min(y0, y1) - 2)), int(max(0, min(x0, x1) - 2))
      bottom = int(min(height, max(y0, y1) + 3))
      right = int(min(width, max(x0, x1) + 3))
      y, x = np.mgrid[top:bottom, left:right].astype(np.float32)
      dy, dx = y1 - y0, x1 - x0
      t = np.clip(((y - y0) * dy + (x - x0) * dx) / max(dy * dy + dx * dx,
                                                         1e-6), 0, 1)
      near = (y - y0 - t * dy)**2 + (x - x0 - t * dx)**2 <= radius**2
      image[top:bottom, left:right][near] = colour


def _background(rng, height, width):
  """Smooth muted colour noise plus fine noise and distractor strokes."""
  cells = int(rng.integers(2, 8))
  grid = np.stack([synthetic_shapes.muted_colour(rng)
                   for _ in range((cells + 1)**2)]).reshape(cells + 1,
                                                            cells + 1, 3)
  gy = np.linspace(0, cells, height, endpoint=False)
  gx = np.linspace(0, cells, width, endpoint=False)
  iy, ix = gy.astype(int), gx.astype(int)
  fy, fx = (gy - iy)[:, None, None], (gx - ix)[None, :, None]
  rows = grid[iy] * (1 - fy) + grid[iy + 1] * fy
  image = rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx
  image += rng.normal(0, rng.uniform(3, 12), (height, width, 3))
  image = np.clip(image, 0, 255).astype(np.uint8)
  _strokes(rng, image)
  return image


def _visible_boxes(owner, count):
  """[count, 4] (ymin, xmin, ymax, xmax) pixel edges of each owner id."""
  height, width = owner.shape
  rows = np.zeros((count + 1, height), bool)
  cols = np.zeros((count + 1, width), bool)
  rows[owner, np.arange(height)[:, None]] = True
  cols[owner, np.arange(width)[None, :]] = True
  rows, cols = rows[1:], cols[1:]
  return np.stack([rows.argmax(1), cols.argmax(1),
                   height - rows[:, ::-1].argmax(1),
                   width - cols[:, ::-1].argmax(1)], 1).astype(np.int64)


def draw_scene(rng, height, width, min_objects=2, max_objects=30):
  """Draws one scene.

  Args:
    rng: a numpy Generator.
    height, width: image size.
    min_objects, max_objects: the object count is drawn uniformly in
      this range.

  Returns:
    image uint8 [H, W, 3]; boxes int [N, 4] (ymin, xmin, ymax, xmax) pixel
    edges of the visible pixels; classes int [N] in 1..12; owner int
    [H, W]: 0 background, i + 1 where object i is visible; drawn int [N]:
    pixels of each object as drawn, before later ones hid any.
  """
  image = _background(rng, height, width)
  owner = np.zeros((height, width), np.int32)
  target = int(rng.integers(min_objects, max_objects + 1))
  short = min(height, width)
  low, high = np.log(SIZE_RANGE)
  classes, drawn = [], np.zeros(0, np.int64)
  visible = np.zeros(0, np.int64)
  for attempt in range(100 * target):
    if len(classes) == target or (attempt >= 10 * target
                                  and len(classes) >= min_objects):
      break
    class_id = int(rng.integers(1, NUM_CLASSES))
    shape, texture = CLASSES[class_id - 1]
    size = short * math.exp(rng.uniform(low, high))
    h = max(_MIN_SIDE, round(size))
    w = max(_MIN_SIDE, round(size * rng.uniform(0.6, 1.0)))
    if rng.random() < 0.5:
      h, w = w, h
    h, w = min(h, height), min(w, width)
    mask = _mask(rng, shape, h, w)
    top, left = int(rng.integers(0, height - h + 1)), int(
        rng.integers(0, width - w + 1))
    region = owner[top:top + h, left:left + w]
    hidden = np.bincount(region[mask], minlength=len(classes) + 1)[1:]
    if mask.sum() < _MIN_PIXELS or np.any(visible - hidden < np.maximum(
        (1 - MAX_HIDDEN) * drawn, _MIN_PIXELS)):
      continue
    pixels = _texture(rng, texture, h, w, size)
    image[top:top + h, left:left + w][mask] = pixels[mask]
    region[mask] = len(classes) + 1
    visible = np.append(visible - hidden, mask.sum())
    drawn = np.append(drawn, mask.sum())
    classes.append(class_id)
  return (image, _visible_boxes(owner, len(classes)),
          np.array(classes, np.int64), owner, drawn)


def write_synthetic_dataset(directory, num_train=512, num_val=64,
                            image_size=256, seed=0, examples_per_shard=256,
                            min_objects=2, max_objects=30):
  """Writes train/validation TFRecord shards of square scenes, info.json
  and class_names.txt to `directory` (see `synthetic_shapes`: the same
  files and source ids). `image_size` >= MIN_IMAGE_SIZE; objects per
  image in [min_objects, max_objects]; info.json records them. Returns
  {split: [files]}."""
  checks.integer('num_train', num_train, 1)
  checks.integer('num_val', num_val, 1)
  checks.integer('image_size', image_size, MIN_IMAGE_SIZE)
  checks.integer('seed', seed, 0)
  checks.integer('examples_per_shard', examples_per_shard, 1)
  checks.integer('min_objects', min_objects, 1)
  checks.integer('max_objects', max_objects, min_objects)

  def example(rng, source_id):
    scene = draw_scene(rng, image_size, image_size, min_objects, max_objects)
    return synthetic_shapes.scene_example(scene[:4], source_id)

  return synthetic_shapes.write_dataset(
      directory, example, CLASS_NAMES, (num_train, num_val),
      {'dataset': DATASET, 'image_size': image_size, 'seed': seed,
       'min_objects': min_objects, 'max_objects': max_objects},
      examples_per_shard)


def write_sample_images(directory, sizes, seed=0):
  """Writes one PNG scene per (height, width) in `sizes`, drawn apart from
  the splits; returns the paths."""
  return synthetic_shapes.write_sample_images(directory, sizes, seed,
                                              draw=draw_scene)


def write_sample_grid(path, count=4, image_size=256, seed=0, columns=2):
  """Writes the first `count` sample scenes (see `write_sample_images`)
  with their boxes and class names as one PNG grid in 256 colours (a small
  file, for docs); returns the grid, in full colour."""
  checks.integer('count', count, 1)
  checks.integer('columns', columns, 1)
  tiles = [boxes_viz.draw_ground_truth(
      *draw_scene(np.random.default_rng([seed, len(SPLITS), i]), image_size,
                  image_size)[:3], CLASS_NAMES) for i in range(count)]
  tiles += [np.full_like(tiles[0], 255)] * (-count % columns)
  grid = np.concatenate([np.concatenate(tiles[i:i + columns], 1)
                         for i in range(0, len(tiles), columns)], 0)
  Image.fromarray(grid).quantize(256, dither=Image.Dither.NONE).save(
      path, format='PNG', optimize=True)
  return grid
