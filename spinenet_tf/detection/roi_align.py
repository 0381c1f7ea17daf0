"""RoI align: bilinear crops of feature maps (and of ground-truth masks).

The sampling is Model Garden's (`multilevel_crop_and_resize`,
`crop_mask_in_target_box`): an S x S output samples one point per bin, at
offset `sample_offset` (0.5: the bin centre) of the box divided into S x S
bins, bilinearly from the four neighbouring cells; neighbours are clamped
to the map (points outside extrapolate from the border cells, as there).
A box reads the level

    clip(floor(log2(sqrt(h * w) / 224)) + 4, min_level, max_level)

(224 px, level 4: the FPN paper's canonical size and level).

One gather over the maps flattened into rows does all boxes and levels, so
shapes are static (XLA, TPU, JAX) and the gradient is one scatter-add.
"""

import math

from keras import ops

CANONICAL_SIZE = 224.0
CANONICAL_LEVEL = 4
EPSILON = 1e-8


def _grid(start, size, limit, output_size, sample_offset):
  """Sample positions along one axis: (low cell [..., S], high cell,
  weight of the low cell, weight of the high cell); `start`, `size` [...]
  in cells, `limit` [...] the last cell index."""
  # Model Garden's order of operations: the same float32 roundings.
  steps = ops.arange(output_size, dtype='float32') + sample_offset
  points = start[..., None] + steps * size[..., None] / float(output_size)
  low = ops.minimum(ops.maximum(ops.floor(points), 0.0), limit[..., None])
  high = ops.minimum(low + 1.0, limit[..., None])
  high_weight = points - low
  return low, high, 1.0 - high_weight, high_weight


def bilinear_crop(flat_maps, base, row_length, limits, boxes, output_size,
                  sample_offset=0.5):
  """S x S bilinear crops of boxes from maps flattened into rows.

  Args:
    flat_maps: [T, C], every map's cells in row-major order, one after
      another.
    base: [B, R] int32, the row of each box's map cell (0, 0).
    row_length: [B, R] int32, the width of each box's map.
    limits: [B, R, 2] float, (height - 1, width - 1) of each box's map.
    boxes: [B, R, 4] float (y, x, height, width) in cells of its map.
    output_size: S.

  Returns:
    [B, R, S, S, C] in the dtype of `flat_maps`.
  """
  y0, y1, wy0, wy1 = _grid(boxes[..., 0], boxes[..., 2], limits[..., 0],
                           output_size, sample_offset)
  x0, x1, wx0, wx1 = _grid(boxes[..., 1], boxes[..., 3], limits[..., 1],
                           output_size, sample_offset)
  rows = ops.cast(ops.stack([y0, y1], axis=-1), 'int32')  # [B, R, S, 2]
  cols = ops.cast(ops.stack([x0, x1], axis=-1), 'int32')
  index = (base[:, :, None, None, None, None]
           + rows[:, :, :, :, None, None] * row_length[:, :, None, None, None,
                                                        None]
           + cols[:, :, None, None, :, :])  # [B, R, S, 2, S, 2]
  corners = ops.take(flat_maps, ops.reshape(index, (-1,)), axis=0)
  corners = ops.reshape(corners, tuple(index.shape) + (flat_maps.shape[-1],))
  weight_y = ops.stack([wy0, wy1], axis=-1)[:, :, :, :, None, None]
  weight_x = ops.stack([wx0, wx1], axis=-1)[:, :, None, None, :, :]
  weights = ops.cast(weight_y * weight_x, flat_maps.dtype)[..., None]
  return ops.sum(corners * weights, axis=(3, 5))


def roi_levels(boxes, min_level, max_level):
  """[B, R] int32: the pyramid level each (ymin, xmin, ymax, xmax) box
  reads."""
  height = boxes[..., 2] - boxes[..., 0]
  width = boxes[..., 3] - boxes[..., 1]
  side = ops.sqrt(ops.maximum(height * width, 0.0))
  level = ops.floor(ops.log(ops.maximum(side, EPSILON) / CANONICAL_SIZE)
                    / math.log(2.0)) + CANONICAL_LEVEL
  return ops.cast(ops.clip(level, min_level, max_level), 'int32')


def multilevel_roi_align(features, boxes, output_size=7, sample_offset=0.5):
  """Crops of `boxes` [B, R, 4] (image pixels) from `features`
  {str(level): [B, H_l, W_l, C]} at each box's level -> [B, R, S, S, C]."""
  levels = sorted(features, key=int)
  min_level, max_level = int(levels[0]), int(levels[-1])
  shapes = [tuple(features[k].shape[1:3]) for k in levels]
  sizes = [h * w for h, w in shapes]
  offsets = [sum(sizes[:i]) for i in range(len(sizes))]
  channels = features[levels[0]].shape[-1]
  flat = ops.concatenate(
      [ops.reshape(features[k], (ops.shape(features[k])[0], -1, channels))
       for k in levels], axis=1)
  batch = ops.shape(boxes)[0]
  flat = ops.reshape(flat, (-1, channels))

  boxes = ops.cast(boxes, 'float32')
  index = roi_levels(boxes, min_level, max_level) - min_level  # [B, R]

  def per_level(values, dtype):
    return ops.take(ops.convert_to_tensor(values, dtype), index)

  scale = per_level([2.0**int(k) for k in levels], 'float32')
  base = (per_level(offsets, 'int32')
          + sum(sizes) * ops.arange(batch, dtype='int32')[:, None])
  limits = ops.stack([per_level([h - 1.0 for h, _ in shapes], 'float32'),
                      per_level([w - 1.0 for _, w in shapes], 'float32')],
                     axis=-1)
  cells = ops.stack([boxes[..., 0], boxes[..., 1],
                     boxes[..., 2] - boxes[..., 0],
                     boxes[..., 3] - boxes[..., 1]], axis=-1) / scale[..., None]
  return bilinear_crop(flat, base, per_level([w for _, w in shapes], 'int32'),
                       limits, cells, output_size, sample_offset)


def crop_masks(masks, mask_boxes, rois, output_size=28, sample_offset=0.5):
  """Mask training targets: each RoI's crop of its instance's mask.

  Args:
    masks: [B, K, Hm, Wm] float, each instance's mask resampled to its own
      box `mask_boxes` [B, K, 4] (pixels), as the parser stores them.
    rois: [B, K, 4] pixels.

  Returns:
    [B, K, S, S] float32 in [0, 1]: the mask's values over the RoI (zero
    outside the instance's box).
  """
  masks = ops.cast(masks, 'float32')
  num_masks, height, width = masks.shape[1:]
  padded = ops.pad(masks, ((0, 0), (0, 0), (2, 2), (2, 2)))
  cells = (height + 4) * (width + 4)
  batch = ops.shape(masks)[0]
  base = (ops.arange(num_masks, dtype='int32')[None, :]
          + num_masks * ops.arange(batch, dtype='int32')[:, None]) * cells
  mask_boxes = ops.cast(mask_boxes, 'float32')
  rois = ops.cast(rois, 'float32')
  box_height = mask_boxes[..., 2] - mask_boxes[..., 0] + EPSILON
  box_width = mask_boxes[..., 3] - mask_boxes[..., 1] + EPSILON
  boxes = ops.stack([
      (rois[..., 0] - mask_boxes[..., 0]) * height / box_height + 2.0,
      (rois[..., 1] - mask_boxes[..., 1]) * width / box_width + 2.0,
      (rois[..., 2] - rois[..., 0]) * height / box_height,
      (rois[..., 3] - rois[..., 1]) * width / box_width], axis=-1)
  ones = ops.ones_like(box_height)
  limits = ops.stack([ones * (height + 3.0), ones * (width + 3.0)], axis=-1)
  crops = bilinear_crop(ops.reshape(padded, (-1, 1)), base,
                        ops.cast(ones, 'int32') * (width + 4), limits, boxes,
                        output_size, sample_offset)
  return crops[..., 0]
