"""Mask R-CNN against Model Garden 2.20.0: parameter counts at the reference
sizes, and with a converted reference checkpoint the same RPN outputs, box
and mask head outputs on the same RoIs, and the same losses of the same
targets."""

import numpy as np
import pytest
import tensorflow as tf
from official.vision.losses import maskrcnn_losses

from benchmarks.model_garden import (build_reference_maskrcnn,
                                     randomize_batch_norm,
                                     save_reference_model)
from spinenet_tf.detection import (anchors as anchors_lib, box_coder,
                                   rcnn_losses, rcnn_targets, roi_align)
from spinenet_tf.export.model_garden_checkpoint import convert_checkpoint
from spinenet_tf.models.maskrcnn import build_maskrcnn

# Model Garden 2.20.0 at 640 px and 91 classes (DESIGN.md, "Mask R-CNN").
PARAMS = {
    'maskrcnn_spinenet_coco': {'total': 40_851_441, 'backbone': 21_920_192,
                               'decoder': 0, 'rpn_head': 599_055,
                               'box_head': 15_680_967, 'mask_head': 2_651_227},
    'maskrcnn_resnetfpn_coco': {'total': 46_431_985, 'backbone': 23_561_152,
                                'decoder': 3_939_584, 'rpn_head': 599_055,
                                'box_head': 15_680_967,
                                'mask_head': 2_651_227},
}
# Our builder's arguments for each experiment's layout and norms.
OURS = {'maskrcnn_spinenet_coco': ('49', {}),
        'maskrcnn_resnetfpn_coco': ('resnet50', dict(
            min_level=2, max_level=6, anchor_size=8.0, norm_momentum=0.997,
            norm_epsilon=1e-4))}


def _counts(backbone, decoder, rpn_head, box_head, mask_head):
  parts = {'backbone': backbone, 'decoder': decoder, 'rpn_head': rpn_head,
           'box_head': box_head, 'mask_head': mask_head}
  counts = {k: v.count_params() if v is not None else 0
            for k, v in parts.items()}
  return {'total': sum(counts.values()), **counts}


@pytest.mark.parametrize('experiment', list(PARAMS))
def test_parameter_counts_equal_the_reference_at_640(experiment):
  reference, _ = build_reference_maskrcnn(experiment, 640, 91)
  theirs = _counts(reference.backbone, reference.decoder, reference.rpn_head,
                   reference.detection_head[0], reference.mask_head)
  assert theirs['total'] == reference.count_params()
  model_id, options = OURS[experiment]
  ours = build_maskrcnn(model_id, 91, (640, 640, 3), **options)
  counts = _counts(ours.backbone, ours.decoder, ours.rpn_head, ours.box_head,
                   ours.mask_head)
  assert counts['total'] == ours.count_params()
  assert counts == theirs == PARAMS[experiment]


SIZE, CLASSES, BATCH = 128, 5, 2
HEADS = {'detection_head.num_convs': 2, 'mask_head.num_convs': 2}
TOLERANCE = 1e-5  # relative to the largest value compared


def _close(ours, theirs):
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  assert ours.shape == theirs.shape
  scale = max(np.abs(theirs).max(), 1e-3)
  assert np.abs(ours - theirs).max() <= TOLERANCE * scale, (
      np.abs(ours - theirs).max() / scale)


def _randomize(model, seed=0):
  """Non-trivial BN statistics and biases: every variable matters."""
  randomize_batch_norm(model, seed)
  rng = np.random.default_rng(seed + 1)
  for v in model.weights:
    if v.name.endswith('bias:0') or v.name == 'bias':
      v.assign(rng.normal(0.0, 0.1, v.shape))


def _per_level(flat, multilevel_anchors, per_anchor):
  """[B, N, ...] -> {level: [B, H, W, A * per_anchor]} (Model Garden's
  label layout)."""
  out, start = {}, 0
  for level in sorted(multilevel_anchors, key=int):
    h, w, a4 = multilevel_anchors[level].shape
    count = h * w * a4 // 4
    out[level] = tf.reshape(flat[:, start:start + count],
                            [BATCH, h, w, a4 // 4 * per_anchor])
    start += count
  return out


@pytest.mark.parametrize('experiment', list(PARAMS))
def test_converted_checkpoint_gives_the_reference_outputs_and_losses(
    experiment, tmp_path):
  """SpineNet-49S (Model Garden's own scaling) or ResNet-50-FPN at 128 px,
  5 classes, 2 convs per RoI head."""
  model_id, options = OURS[experiment]
  model_id = '49S' if model_id == '49' else model_id
  reference, _ = build_reference_maskrcnn(
      experiment, SIZE, CLASSES,
      model_id='49S' if model_id == '49S' else None, **HEADS)
  _randomize(reference)
  path = save_reference_model(reference, tmp_path)
  ours = build_maskrcnn(model_id, CLASSES, (SIZE, SIZE, 3), box_num_convs=2,
                        mask_num_convs=2, seed=3, **options)
  assert convert_checkpoint(path, ours) == len(ours.weights)

  rng = np.random.default_rng(0)
  images = rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype('float32')
  image_shape = tf.constant([[SIZE, SIZE]] * BATCH, tf.float32)
  outputs = reference(images, image_shape=image_shape, training=False)
  features = ours.pyramid(images)
  their_features = outputs['decoder_features']
  rpn_scores, rpn_boxes = ours.rpn_head(features)
  for level in their_features:
    _close(features[level], their_features[level])
    _close(rpn_scores[level], outputs['rpn_scores'][level])
    _close(rpn_boxes[level], outputs['rpn_boxes'][level])

  # The same RoIs through both box and mask heads.
  gt_boxes = np.array([[[8, 10, 60, 70], [40, 30, 120, 110], [0, 0, 0, 0]],
                       [[20, 20, 100, 90], [0, 0, 0, 0], [0, 0, 0, 0]]],
                      'float32')
  gt_classes = np.array([[1, 3, -1], [4, -1, -1]], 'int32')
  corner = rng.uniform(0, SIZE * 0.7, (BATCH, 40, 2))
  sides = rng.uniform(8, SIZE * 0.6, (BATCH, 40, 2))
  proposals = np.concatenate([corner, corner + sides], -1).astype('float32')
  seed = ours.seed_generator
  samples = rcnn_targets.sample_rois(proposals, gt_boxes, gt_classes, seed,
                                     num_samples=32)
  rois = samples['rois']
  class_outputs, box_outputs = ours.box_head(
      roi_align.multilevel_roi_align(features, rois, 7))
  their_class, their_box = reference.detection_head[0](
      reference.roi_aligner(their_features, rois), training=False)
  _close(class_outputs, their_class)
  _close(box_outputs, their_box)
  masks = rcnn_targets.sample_masks(
      samples, gt_boxes,
      (rng.uniform(size=(BATCH, 3, 28, 28)) > 0.5).astype('float32'),
      num_masks=8)
  mask_outputs = ours.mask_head(
      (roi_align.multilevel_roi_align(features, masks['rois'], 14),
       masks['classes']))
  their_masks = reference.mask_head(
      [reference.mask_roi_aligner(their_features, masks['rois']),
       masks['classes']], training=False)
  _close(mask_outputs, their_masks)

  # The same targets through both losses.
  rpn = rcnn_targets.rpn_targets(ours.anchors, gt_boxes, gt_classes, seed)
  score_loss, box_loss = rcnn_losses.rpn_losses(
      anchors_lib.flatten_levels(rpn_scores, 1)[..., 0],
      anchors_lib.flatten_levels(rpn_boxes, 4), rpn, ours.level_sizes, 256)
  anchors = ours.multilevel_anchors
  _close(score_loss, maskrcnn_losses.RpnScoreLoss(256)(
      outputs['rpn_scores'], _per_level(rpn['score_targets'], anchors, 1)))
  _close(box_loss, maskrcnn_losses.RpnBoxLoss(1 / 9)(
      outputs['rpn_boxes'], _per_level(rpn['box_targets'], anchors, 4)))
  box_targets = box_coder.encode_boxes(samples['gt_boxes'], rois,
                                       (10.0, 10.0, 5.0, 5.0))
  class_loss, frcnn_box_loss = rcnn_losses.fast_rcnn_losses(
      class_outputs, box_outputs, samples['classes'], box_targets)
  _close(class_loss, maskrcnn_losses.FastrcnnClassLoss()(
      their_class, samples['classes']))
  _close(frcnn_box_loss, maskrcnn_losses.FastrcnnBoxLoss(1.0)(
      their_box, samples['classes'], box_targets))
  _close(rcnn_losses.mask_loss(mask_outputs, masks['targets'],
                               masks['classes']),
         maskrcnn_losses.MaskrcnnLoss()(their_masks, masks['targets'],
                                        masks['classes']))
  assert float(np.sum(np.asarray(samples['classes']) > 0)) >= 3  # not empty
