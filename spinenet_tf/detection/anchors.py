"""Multi-level anchor boxes and the (level, y, x, anchor) layout they define.

Anchors are numpy constants: one grid per level, `num_scales` octave scales x
`aspect_ratios` boxes centred on every cell, in (ymin, xmin, ymax, xmax)
pixels. The geometry is that of Model Garden's `official.vision.ops.anchor`.
"""

import math

import numpy as np
from keras import ops


def anchors_per_location(num_scales, aspect_ratios):
  return num_scales * len(aspect_ratios)


def generate_anchors(image_size, min_level=3, max_level=7, num_scales=3,
                     aspect_ratios=(0.5, 1.0, 2.0), anchor_size=3.0):
  """Anchor boxes of every level for an image of `image_size` (height, width).

  At level l the grid has ceil(size / 2**l) cells; the base box side is
  anchor_size * 2**l * 2**(scale / num_scales), stretched to width / height =
  aspect ratio at constant area. Per cell the order is scale-major, then
  aspect ratio.

  Returns:
    {str(level): float32 array [height_l, width_l, num_anchors * 4]}.
  """
  height, width = (int(s) for s in image_size[:2])
  boxes = {}
  for level in range(min_level, max_level + 1):
    rows, cols = math.ceil(height / 2**level), math.ceil(width / 2**level)
    stride_y, stride_x = np.float32(height / rows), np.float32(width / cols)
    y = stride_y / 2 + np.arange(rows, dtype=np.float32) * stride_y
    x = stride_x / 2 + np.arange(cols, dtype=np.float32) * stride_x
    xv, yv = np.meshgrid(x, y)
    level_boxes = []
    for scale in range(num_scales):
      side = anchor_size * 2**level * 2**(scale / num_scales)
      for ratio in aspect_ratios:
        half_y = np.float32(side * ratio**-0.5 / 2)
        half_x = np.float32(side * ratio**0.5 / 2)
        level_boxes.append(np.stack(
            [yv - half_y, xv - half_x, yv + half_y, xv + half_x], axis=-1))
    boxes[str(level)] = np.concatenate(level_boxes, axis=-1)
  return boxes


def flatten_anchors(multilevel_anchors):
  """{level: [H, W, A * 4]} -> float32 [num_anchors, 4], levels ascending."""
  return np.concatenate(
      [multilevel_anchors[k].reshape(-1, 4)
       for k in sorted(multilevel_anchors, key=int)], axis=0)


def flatten_levels(multilevel_outputs, last_dim):
  """{level: [B, H, W, A * last_dim]} -> [B, sum(H * W * A), last_dim].

  The row order is that of `flatten_anchors`, so row i predicts anchor i.
  """
  return ops.concatenate(
      [ops.reshape(multilevel_outputs[k], (ops.shape(multilevel_outputs[k])[0],
                                           -1, last_dim))
       for k in sorted(multilevel_outputs, key=int)], axis=1)
