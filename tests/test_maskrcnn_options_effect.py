"""Every `build_maskrcnn` keyword takes effect (the rule of
tests/test_options_effect.py): on the weights, the seeded training losses
of a fixed batch, or the detections of fixed images. Structure keywords
build the whole model; sampling, loss and detection keywords build the
heads on one shared backbone."""

import inspect

import numpy as np
import pytest

from spinenet_tf.models import backbone as backbone_lib
from spinenet_tf.models import maskrcnn as maskrcnn_lib

from tests.test_options_effect import (MINI_SPINENET, SHAPE, assert_effect,
                                       observer, synchronized_norms)

TINY_HEADS = dict(rpn_num_filters=8, box_num_convs=1, box_num_filters=8,
                  fc_dims=16, mask_num_convs=1, mask_num_filters=8,
                  rpn_pre_nms_top_k=100, rpn_num_proposals=60,
                  rpn_test_pre_nms_top_k=100, rpn_test_num_proposals=40,
                  num_sampled_rois=32, num_sampled_masks=8, max_detections=20,
                  seed=1)
SMALL_BACKBONE = {'filter_size_scale': 0.25, 'endpoints_num_filters': 8}
BASE = dict(backbone_model_id=MINI_SPINENET, num_classes=4, input_shape=SHAPE,
            backbone_kwargs=SMALL_BACKBONE, **TINY_HEADS)
# Keywords shown by building the whole model.
MODEL_VALUES = {
    'backbone_model_id': '49S',
    'num_classes': 5,
    'input_shape': (256, 256, 3),
    'min_level': 4,
    'max_level': 6,
    'backbone_kwargs': {**SMALL_BACKBONE, 'stochastic_depth_rate': 0.2},
    'name': 'my_maskrcnn',
    'decoder': 'fpn',
    'num_scales': 2,
    'aspect_ratios': (1.0,),
    'activation': 'swish',
    'use_sync_bn': True,
    'norm_momentum': 0.9,
    'norm_epsilon': 1e-2,
    'kernel_regularizer': 'l2',
    'rpn_num_convs': 2,
    'rpn_num_filters': 4,
    'box_num_convs': 2,
    'box_num_filters': 4,
    'num_fcs': 2,
    'fc_dims': 8,
    'mask_num_convs': 2,
    'mask_num_filters': 4,
    'roi_size': 5,
    'mask_roi_size': 7,
}
# Keywords shown on the shared backbone.
OUTPUT_VALUES = {
    'anchor_size': 5.0,
    'rpn_match_threshold': 0.5,
    'rpn_unmatched_threshold': 0.1,
    'rpn_batch_size_per_im': 64,
    'rpn_fg_fraction': 0.01,
    'rpn_pre_nms_top_k': 20,
    'rpn_nms_iou_threshold': 0.3,
    'rpn_num_proposals': 30,
    'rpn_test_pre_nms_top_k': 20,
    'rpn_test_nms_iou_threshold': 0.3,
    'rpn_test_num_proposals': 10,
    'num_sampled_rois': 16,
    'foreground_fraction': 0.01,
    'foreground_iou_threshold': 0.7,
    'background_iou_high_threshold': 0.3,
    'background_iou_low_threshold': 0.1,
    'mix_gt_boxes': False,
    'sample_offset': 0.2,
    'num_sampled_masks': 2,
    'box_coder_weights': (1.0, 1.0, 1.0, 1.0),
    'rpn_huber_delta': 0.5,
    'frcnn_huber_delta': 0.1,
    'rpn_score_weight': 2.0,
    'rpn_box_weight': 2.0,
    'frcnn_class_weight': 2.0,
    'frcnn_box_weight': 2.0,
    'mask_weight': 2.0,
    'pre_nms_top_k': 10,
    'score_threshold': 0.3,
    'iou_threshold': 0.1,
    'max_detections': 5,
    'seed': 2,
}
GT = {'boxes': np.array([[[20, 20, 60, 60], [70, 10, 120, 50], [0, 0, 0, 0]]],
                        'float32'),
      'classes': np.array([[1, 2, -1]], 'int32'),
      'masks': (np.random.default_rng(0).uniform(size=(1, 3, 28, 28)) > 0.5
                ).astype('float32')}


def observation(model):
  """Weights, seeded training losses of a fixed batch, detections of fixed
  images, anchors."""
  rng = np.random.default_rng(3)
  images = rng.normal(size=(1, *model.image_shape)).astype('float32')
  scale = model.image_shape[0] / SHAPE[0]
  labels = {**GT, 'boxes': GT['boxes'] * scale}
  losses = model.training_losses(
      model(model.training_inputs(images, labels), training=True), labels)
  detections = model.detect(images)
  return {'name': model.name,
          'weights': [(tuple(w.shape), round(float(np.sum(w.numpy())), 4))
                      for w in model.weights],
          'losses': {k: round(float(v), 5) for k, v in losses.items()},
          'detections': {k: np.asarray(v).round(3).tolist()
                         for k, v in detections.items()},
          'anchors': round(float(np.sum(model.anchors)), 2),
          'regularisers': len(model.losses)}


def _observer(key):
  return synchronized_norms if observer(key) is synchronized_norms else (
      observation)


def test_table_is_complete():
  signature = inspect.signature(maskrcnn_lib.build_maskrcnn).parameters
  keywords = {k for k in signature if k != 'options'} | set(
      maskrcnn_lib.DEFAULTS)
  # decoder_kwargs: needs a decoder (below).
  assert keywords == set(MODEL_VALUES) | set(OUTPUT_VALUES) | {
      'decoder_kwargs'}


@pytest.mark.parametrize('key', sorted(MODEL_VALUES))
def test_model_keyword_takes_effect(key):
  assert_effect(maskrcnn_lib.build_maskrcnn, BASE, key, MODEL_VALUES[key],
                observe=_observer(key))


def test_decoder_kwargs_take_effect():
  assert_effect(maskrcnn_lib.build_maskrcnn, {**BASE, 'decoder': 'fpn'},
                'decoder_kwargs', {'num_filters': 4}, observe=observation)


@pytest.fixture(scope='module')
def shared_backbone():
  return backbone_lib.build_backbone(MINI_SPINENET, SHAPE, **SMALL_BACKBONE)


@pytest.mark.parametrize('key', sorted(OUTPUT_VALUES))
def test_sampling_loss_and_detection_keyword_takes_effect(key,
                                                          shared_backbone):
  build = lambda **options: maskrcnn_lib.MaskRCNN(  # noqa: E731
      shared_backbone, 4, **{**TINY_HEADS, **options})
  assert_effect(build, {}, key, OUTPUT_VALUES[key], observe=observation)


def test_build_maskrcnn_forwards_every_option():
  model = maskrcnn_lib.build_maskrcnn(**{**BASE, **OUTPUT_VALUES})
  for key, value in OUTPUT_VALUES.items():
    assert model.settings[key] == value, key
