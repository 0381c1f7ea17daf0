"""Boxes on images: detections ('name 0.87' labels) and ground truth.

Boxes are (ymin, xmin, ymax, xmax) in pixels of `image` and cover pixels
[ymin, ymax) x [xmin, xmax). Each class id has its own colour
(`class_color`); a label sits above its box, or just inside it at the top
edge, and always inside the image. Entries with class <= 0 are padding.
"""

import colorsys
import io
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spinenet_tf.io_utils import atomic_write

GOLDEN_RATIO = 0.618033988749895


def class_color(class_id):
  """A bright (r, g, b) colour per class id; neighbouring ids differ."""
  hue = (int(class_id) * GOLDEN_RATIO) % 1.0
  return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.8, 0.95))


def _text_color(color):
  luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
  return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _name(class_names, class_id):
  if isinstance(class_names, Mapping):
    return str(class_names.get(class_id, class_id))
  if class_names is not None and 0 <= class_id < len(class_names):
    return str(class_names[class_id])
  return str(class_id)


def save_png(image, path):
  """Writes a uint8 [H, W, 3] image to `path` (local or gs://) as PNG,
  atomically."""
  png = io.BytesIO()
  Image.fromarray(image).save(png, format='PNG')
  atomic_write(path, png.getvalue())


def _pixel_box(box, height, width):
  """Float box -> inclusive pixel corners (x0, y0, x1, y1) in the image."""
  ymin, xmin, ymax, xmax = (float(v) for v in box)
  x0 = int(np.clip(round(xmin), 0, width - 1))
  y0 = int(np.clip(round(ymin), 0, height - 1))
  x1 = int(np.clip(round(xmax) - 1, x0, width - 1))
  y1 = int(np.clip(round(ymax) - 1, y0, height - 1))
  return x0, y0, x1, y1


def _draw(image, boxes, classes, labels, path):
  """Draws every box, then every label on top, and returns the image."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError('image must be uint8 [height, width, 3], got '
                     f'{image.dtype} {image.shape}.')
  height, width = image.shape[:2]
  line = max(2, round(min(height, width) / 200))
  font = ImageFont.load_default(size=max(10, round(min(height, width) / 32)))
  pad = max(2, line // 2 + 1)
  canvas = Image.fromarray(image)
  draw = ImageDraw.Draw(canvas)
  corners = [_pixel_box(box, height, width) for box in boxes]
  colors = [class_color(c) for c in classes]
  for corner, color in zip(corners, colors):
    draw.rectangle(corner, outline=color, width=line)
  for (x0, y0, _, _), color, label in zip(corners, colors, labels):
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    label_w, label_h = right - left + 2 * pad, bottom - top + 2 * pad
    y = y0 - label_h if y0 >= label_h else y0
    x = min(x0, max(0, width - label_w))
    y = min(y, max(0, height - label_h))
    draw.rectangle((x, y, x + label_w - 1, y + label_h - 1), fill=color)
    draw.text((x + pad - left, y + pad - top), label, fill=_text_color(color),
              font=font)
  result = np.asarray(canvas).copy()
  if path is not None:
    save_png(result, path)
  return result


def draw_detections(image, boxes, classes, scores, class_names=None,
                    score_threshold=0.3, path=None):
  """Draws detections with score >= `score_threshold` on a copy of `image`.

  Args:
    image: uint8 [H, W, 3].
    boxes: [D, 4] pixels; classes: [D] ids (<= 0 is padding); scores: [D].
    class_names: {id: name} or a sequence indexed by class id; default the
      id itself.
    path: if given, the result is also written there as PNG.

  Returns:
    The annotated uint8 [H, W, 3] image; the best detection is drawn last.
  """
  boxes, classes = np.asarray(boxes), np.asarray(classes).astype(int)
  scores = np.asarray(scores, dtype=float)
  keep = [i for i in np.argsort(scores, kind='stable')
          if classes[i] > 0 and scores[i] >= score_threshold]
  labels = [f'{_name(class_names, classes[i])} {scores[i]:.2f}' for i in keep]
  return _draw(image, boxes[keep], classes[keep], labels, path)


def draw_ground_truth(image, boxes, classes, class_names=None, path=None):
  """Draws ground-truth boxes (labels without scores); see
  `draw_detections`."""
  boxes, classes = np.asarray(boxes), np.asarray(classes).astype(int)
  keep = [i for i in range(len(classes)) if classes[i] > 0]
  labels = [_name(class_names, classes[i]) for i in keep]
  return _draw(image, boxes[keep], classes[keep], labels, path)
