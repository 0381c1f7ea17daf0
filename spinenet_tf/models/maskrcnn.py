"""Mask R-CNN on a SpineNet or ResNet-FPN backbone.

    model = build_maskrcnn('49', num_classes=91, input_shape=(640, 640, 3))
    outputs = model({'image': images, 'boxes': gt_boxes,
                     'classes': gt_classes, 'masks': gt_masks},
                    training=True)          # samples, targets, head outputs
    losses = model.training_losses(outputs, labels)
    detections = model.detect(images)      # boxes, scores, classes, masks

Images go in as the data pipeline normalises them; boxes are (ymin, xmin,
ymax, xmax) pixels of the model input; class 0 is background, -1 padding;
`masks` [B, M, Hm, Wm] hold each instance's mask resampled to its own box
(Model Garden's parser crops them at 112 x 112).

A training call runs the whole first stage and the sampling on the
accelerator: RPN -> proposals (2000 per level, NMS 0.7, 1000 kept) ->
RoI sampling (512, 25% foreground) -> RoI align 7 x 7 -> Fast R-CNN head;
the first 128 foreground RoIs -> RoI align 14 x 14 -> mask head, their
targets cropped from the instance masks; RPN anchor labels (256 per
image). An inference call stops at the box head (1000 proposals); `detect`
adds per-class NMS and the detections' masks.
"""

import keras
from keras import ops

from spinenet_tf import checks
from spinenet_tf.detection import anchors as anchors_lib
from spinenet_tf.detection import (box_coder, postprocess, proposals,
                                   rcnn_losses, rcnn_postprocess, rcnn_targets,
                                   roi_align)
from spinenet_tf.layers.common import (PACKAGE, check_activation,
                                       refuse_unknown_keywords)
from spinenet_tf.layers.rcnn_heads import FastRCNNHead, MaskHead, RPNHead
from spinenet_tf.models import pyramid
from spinenet_tf.models.detector import Detector, fixed_image_shape

DEFAULTS = dict(
    # Anchors and the feature levels (RPN, RoI align).
    min_level=3, max_level=7, num_scales=1, aspect_ratios=(0.5, 1.0, 2.0),
    anchor_size=3.0,
    # Every head (and, through the builder, backbone and decoder).
    activation='relu', use_sync_bn=False, norm_momentum=0.99,
    norm_epsilon=1e-3, kernel_regularizer=None,
    # RPN head and its anchor labels.
    rpn_num_convs=1, rpn_num_filters=256, rpn_match_threshold=0.7,
    rpn_unmatched_threshold=0.3, rpn_batch_size_per_im=256,
    rpn_fg_fraction=0.5,
    # Proposals, training and inference.
    rpn_pre_nms_top_k=2000, rpn_nms_iou_threshold=0.7, rpn_num_proposals=1000,
    rpn_test_pre_nms_top_k=1000, rpn_test_nms_iou_threshold=0.7,
    rpn_test_num_proposals=1000,
    # RoI sampling.
    num_sampled_rois=512, foreground_fraction=0.25,
    foreground_iou_threshold=0.5, background_iou_high_threshold=0.5,
    background_iou_low_threshold=0.0, mix_gt_boxes=True,
    # RoI align, box head, mask head.
    roi_size=7, mask_roi_size=14, sample_offset=0.5, box_num_convs=4,
    box_num_filters=256, num_fcs=1, fc_dims=1024, mask_num_convs=4,
    mask_num_filters=256, num_sampled_masks=128,
    box_coder_weights=rcnn_postprocess.BOX_CODER_WEIGHTS,
    # Losses.
    rpn_huber_delta=1.0 / 9, frcnn_huber_delta=1.0, rpn_score_weight=1.0,
    rpn_box_weight=1.0, frcnn_class_weight=1.0, frcnn_box_weight=1.0,
    mask_weight=1.0,
    # Detections.
    pre_nms_top_k=5000, score_threshold=0.05, iou_threshold=0.5,
    max_detections=100,
    # The sampling's random stream (None: a random seed).
    seed=None)

COUNTS = ('num_scales', 'rpn_num_filters', 'rpn_batch_size_per_im',
          'rpn_pre_nms_top_k', 'rpn_num_proposals', 'rpn_test_pre_nms_top_k',
          'rpn_test_num_proposals', 'num_sampled_rois', 'roi_size',
          'mask_roi_size', 'box_num_filters', 'fc_dims', 'mask_num_filters',
          'num_sampled_masks', 'pre_nms_top_k', 'max_detections', 'min_level',
          'max_level')
DEPTHS = ('rpn_num_convs', 'box_num_convs', 'num_fcs', 'mask_num_convs')
FRACTIONS = ('rpn_match_threshold', 'rpn_fg_fraction',
             'rpn_nms_iou_threshold', 'rpn_test_nms_iou_threshold',
             'foreground_fraction', 'foreground_iou_threshold',
             'background_iou_high_threshold', 'iou_threshold',
             'sample_offset')
NON_NEGATIVE = ('rpn_score_weight', 'rpn_box_weight', 'frcnn_class_weight',
                'frcnn_box_weight', 'mask_weight')
LOSS_WEIGHTS = {'rpn_score_loss': 'rpn_score_weight',
                'rpn_box_loss': 'rpn_box_weight',
                'frcnn_class_loss': 'frcnn_class_weight',
                'frcnn_box_loss': 'frcnn_box_weight',
                'mask_loss': 'mask_weight'}


def _settings(options):
  """DEFAULTS updated by `options`, checked; unknown keys are a TypeError."""
  refuse_unknown_keywords('MaskRCNN', options, DEFAULTS)
  s = {**DEFAULTS, **options}
  for key in COUNTS:
    checks.integer(key, s[key], 1)
  for key in DEPTHS:
    checks.integer(key, s[key], 0)
  for key in FRACTIONS:
    checks.number(key, s[key], 0, 1)
  for key in NON_NEGATIVE:
    checks.number(key, s[key], 0)
  for key in ('anchor_size', 'rpn_huber_delta', 'frcnn_huber_delta',
              'norm_epsilon'):
    checks.number(key, s[key], 0, low_open=True)
  checks.number('rpn_unmatched_threshold', s['rpn_unmatched_threshold'], 0,
                s['rpn_match_threshold'])
  checks.number('background_iou_low_threshold',
                s['background_iou_low_threshold'], 0,
                s['background_iou_high_threshold'])
  checks.number('score_threshold', s['score_threshold'], 0, 1,
                high_open=True)
  checks.number('norm_momentum', s['norm_momentum'], 0, 1, high_open=True)
  for key in ('use_sync_bn', 'mix_gt_boxes'):
    checks.boolean(key, s[key])
  check_activation(s['activation'])
  for key in ('aspect_ratios', 'box_coder_weights'):
    values = s[key]
    if not isinstance(values, (list, tuple)) or not values or (
        key == 'box_coder_weights' and len(values) != 4):
      raise ValueError(f'{key} must be a list of positive numbers'
                       f'{" (4)" if key == "box_coder_weights" else ""}, '
                       f'got {values!r}.')
    for value in values:
      checks.number(f'{key}[i]', value, 0, low_open=True)
    s[key] = tuple(float(value) for value in values)
  if s['seed'] is not None:
    checks.integer('seed', s['seed'], 0)
  return s


def _head_settings(settings):
  return {k: settings[k] for k in pyramid.SHARED_KEYS}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskRCNN(Detector, keras.Model):
  """Mask R-CNN: `backbone` [-> `decoder`] -> RPN, box and mask heads (a
  `Detector`).

  Args:
    backbone: a keras.Model with a fixed (height, width, 3) input returning
      {str(level): features} for min_level..max_level, or what `decoder`
      reads.
    num_classes: class outputs, background slot 0 included.
    decoder: None or a keras.Model from the backbone's features to
      {str(level): features} (e.g. `FPN`).
    **options: any key of `DEFAULTS`.
  """

  LOSS_NAMES = ('total_loss', 'rpn_score_loss', 'rpn_box_loss',
                'frcnn_class_loss', 'frcnn_box_loss', 'mask_loss')
  # None cut after the last real instance: the sampling's top-k over
  # proposals + ground truth needs a static number of slots.
  INSTANCE_LABELS = ()
  LIST_SETTINGS = ('aspect_ratios', 'box_coder_weights')
  TRAINING_MASK_SIZE = 112  # Model Garden's parser crop (mask_crop_size)
  SERVABLE = False  # the SavedModel's masks: issue 28, slice (c)

  def __init__(self, backbone, num_classes, decoder=None, name='maskrcnn',
               trainable=True, **options):
    super().__init__(name=name, trainable=trainable)
    settings = _settings(options)
    checks.integer('num_classes', num_classes, 2)
    image_shape = fixed_image_shape(backbone, 'MaskRCNN')
    s = settings
    self.multilevel_anchors = anchors_lib.generate_anchors(
        image_shape, s['min_level'], s['max_level'], s['num_scales'],
        s['aspect_ratios'], s['anchor_size'])
    self.anchors = anchors_lib.flatten_anchors(self.multilevel_anchors)
    self.level_sizes = [self.multilevel_anchors[k].size // 4
                        for k in sorted(self.multilevel_anchors, key=int)]
    self.backbone = backbone
    self.decoder = decoder
    self.num_classes = num_classes
    self.image_shape = image_shape
    self.settings = settings
    shared = _head_settings(s)
    self.rpn_head = RPNHead(
        s['min_level'], s['max_level'],
        anchors_lib.anchors_per_location(s['num_scales'], s['aspect_ratios']),
        s['rpn_num_convs'], s['rpn_num_filters'], name='rpn_head', **shared)
    self.box_head = FastRCNNHead(
        num_classes, s['box_num_convs'], s['box_num_filters'], s['num_fcs'],
        s['fc_dims'], name='box_head', **shared)
    self.mask_head = MaskHead(num_classes, s['mask_num_convs'],
                              s['mask_num_filters'], name='mask_head',
                              **shared)
    self.seed_generator = keras.random.SeedGenerator(s['seed'])
    self._build_heads()

  def _trackable_children(self, save_type='checkpoint', **kwargs):
    """TF checkpoints also hold the sampling's random state (not one of
    Keras's `weights`), so that a resumed run draws on where it stopped."""
    children = super()._trackable_children(save_type, **kwargs)
    if save_type == 'checkpoint':
      children['seed_generator_state'] = self.seed_generator.state
    return children

  def _build_heads(self):
    """Creates every head's variables from the pyramid's shapes."""
    features = self.pyramid(keras.Input(shape=self.image_shape))
    levels = [str(level) for level in range(self.settings['min_level'],
                                            self.settings['max_level'] + 1)]
    missing = [level for level in levels if level not in features]
    if missing:
      source = self.decoder or self.backbone
      raise ValueError(f'the {"decoder" if self.decoder else "backbone"} '
                       f'{source.name!r} gives levels '
                       f'{sorted(features, key=int)}, not the heads\' levels '
                       f'{missing}; a ResNet backbone needs decoder=FPN(...).')
    for level in levels:
      grid = self.multilevel_anchors[level].shape[:2]
      if tuple(features[level].shape[1:3]) != grid:
        raise ValueError(f'level {level}: features of size '
                         f'{features[level].shape[1:3]} do not match the '
                         f'anchor grid {grid}.')
    self.rpn_head.build({level: features[level].shape for level in levels})
    channels = features[levels[0]].shape[-1]
    s = self.settings
    self.box_head.build((None, s['num_sampled_rois'], s['roi_size'],
                         s['roi_size'], channels))
    self.mask_head.build(((None, s['num_sampled_masks'], s['mask_roi_size'],
                           s['mask_roi_size'], channels),
                          (None, s['num_sampled_masks'])))
    self.built = True

  def pyramid(self, images, training=None):
    """{str(level): features} the heads read (levels min..max)."""
    features = self.backbone(images, training=training)
    if self.decoder is not None:
      features = self.decoder(features, training=training)
    levels = range(self.settings['min_level'], self.settings['max_level'] + 1)
    return {str(level): features[str(level)] for level in levels
            if str(level) in features}

  def training_inputs(self, images, labels):
    """The images with the ground truth the training call samples from."""
    return {'image': images, 'boxes': labels['boxes'],
            'classes': labels['classes'], 'masks': labels['masks']}

  def call(self, inputs, training=False):
    """Images -> inference outputs; `training_inputs` -> training outputs
    (see the module doc)."""
    if isinstance(inputs, dict):
      return self._training_outputs(inputs, training)
    features, _, _, rois = self._first_stage(inputs, training, 'rpn_test_')
    class_outputs, box_outputs = self.box_head(
        self._align(features, rois, self.settings['roi_size']),
        training=training)
    return {'features': features, 'rois': rois,
            'class_outputs': class_outputs, 'box_outputs': box_outputs}

  def _first_stage(self, images, training, prefix):
    """(features, RPN scores, RPN boxes, proposals) with the proposal
    settings of `prefix` ('rpn_': training, 'rpn_test_': inference)."""
    s = self.settings
    features = self.pyramid(images, training)
    rpn_scores, rpn_boxes = self.rpn_head(features, training=training)
    rois, _ = proposals.propose_rois(
        rpn_scores, rpn_boxes, self.multilevel_anchors, self.image_shape,
        s[f'{prefix}pre_nms_top_k'], s[f'{prefix}nms_iou_threshold'],
        s[f'{prefix}num_proposals'])
    return features, rpn_scores, rpn_boxes, rois

  def _align(self, features, boxes, size):
    return roi_align.multilevel_roi_align(features, boxes, size,
                                          self.settings['sample_offset'])

  def _training_outputs(self, inputs, training):
    s = self.settings
    gt_boxes = ops.cast(inputs['boxes'], 'float32')
    gt_classes = inputs['classes']
    features, rpn_scores, rpn_boxes, rois = self._first_stage(
        inputs['image'], training, 'rpn_')
    samples = rcnn_targets.sample_rois(
        ops.stop_gradient(rois), gt_boxes, gt_classes, self.seed_generator,
        s['num_sampled_rois'], s['foreground_fraction'],
        s['foreground_iou_threshold'], s['background_iou_high_threshold'],
        s['background_iou_low_threshold'], s['mix_gt_boxes'])
    class_outputs, box_outputs = self.box_head(
        self._align(features, samples['rois'], s['roi_size']),
        training=training)
    masks = rcnn_targets.sample_masks(samples, gt_boxes, inputs['masks'],
                                      s['num_sampled_masks'],
                                      2 * s['mask_roi_size'])
    mask_outputs = self.mask_head(
        (self._align(features, masks['rois'], s['mask_roi_size']),
         masks['classes']), training=training)
    return {
        'rpn_scores': rpn_scores, 'rpn_boxes': rpn_boxes,
        'rpn_targets': rcnn_targets.rpn_targets(
            self.anchors, gt_boxes, gt_classes, self.seed_generator,
            s['rpn_match_threshold'], s['rpn_unmatched_threshold'],
            s['rpn_batch_size_per_im'], s['rpn_fg_fraction']),
        'class_outputs': class_outputs, 'box_outputs': box_outputs,
        'roi_classes': samples['classes'],
        'box_targets': box_coder.encode_boxes(
            samples['gt_boxes'], samples['rois'], s['box_coder_weights']),
        'mask_outputs': mask_outputs,
        'mask_targets': ops.stop_gradient(masks['targets']),
        'mask_classes': masks['classes'],
    }

  def training_losses(self, outputs, labels):
    """LOSS_NAMES of a training call's outputs (the targets are in them)."""
    del labels
    s = self.settings
    losses = {}
    losses['rpn_score_loss'], losses['rpn_box_loss'] = rcnn_losses.rpn_losses(
        anchors_lib.flatten_levels(outputs['rpn_scores'], 1)[..., 0],
        anchors_lib.flatten_levels(outputs['rpn_boxes'], 4),
        outputs['rpn_targets'], self.level_sizes,
        s['rpn_batch_size_per_im'], s['rpn_huber_delta'])
    (losses['frcnn_class_loss'],
     losses['frcnn_box_loss']) = rcnn_losses.fast_rcnn_losses(
         outputs['class_outputs'], outputs['box_outputs'],
         outputs['roi_classes'], outputs['box_targets'],
         s['frcnn_huber_delta'])
    losses['mask_loss'] = rcnn_losses.mask_loss(
        outputs['mask_outputs'], outputs['mask_targets'],
        outputs['mask_classes'])
    losses['total_loss'] = sum(s[weight] * losses[name]
                               for name, weight in LOSS_WEIGHTS.items())
    return losses

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    """The `fit` loss: total_loss plus regularisation losses."""
    del x, sample_weight, training
    loss = self.training_losses(y_pred, y)['total_loss']
    return loss + ops.sum(self.losses) if self.losses else loss

  def output_spec(self):
    """Detector outputs plus each detection's mask probabilities."""
    size = 2 * self.settings['mask_roi_size']
    return {**super().output_spec(),
            'masks': ([self.settings['max_detections'], size, size],
                      'float32')}

  def postprocess(self, outputs, detect_fn=postprocess.non_max_suppression):
    """Inference outputs -> padded detections with masks [B, D, 2S, 2S]
    (sigmoid probabilities over each box); `detect_fn`: the NMS."""
    s = self.settings
    detections = rcnn_postprocess.detect(
        outputs['class_outputs'], outputs['box_outputs'], outputs['rois'],
        self.image_shape, s['max_detections'], s['score_threshold'],
        s['pre_nms_top_k'], s['iou_threshold'], s['box_coder_weights'],
        detect_fn)
    mask_logits = self.mask_head(
        (self._align(outputs['features'], detections['boxes'],
                     s['mask_roi_size']),
         ops.maximum(detections['classes'], 0)), training=False)
    detections['masks'] = ops.sigmoid(ops.cast(mask_logits, 'float32'))
    return detections


def build_maskrcnn(backbone_model_id='49', num_classes=91,
                   input_shape=(640, 640, 3), min_level=3, max_level=7,
                   backbone_kwargs=None, decoder=None, decoder_kwargs=None,
                   name='maskrcnn', **options):
  """Builds Mask R-CNN on a SpineNet or a ResNet-FPN (see
  `pyramid.build_pyramid` for the backbone arguments); **options: `MaskRCNN`
  options (`DEFAULTS`). Model Garden's ResNet-50-FPN experiment uses
  min_level=2, max_level=6, anchor_size=8."""
  settings = _settings(options)
  checks.integer('num_classes', num_classes, 2)
  backbone, decoder_model = pyramid.build_pyramid(
      backbone_model_id, input_shape, min_level, max_level,
      _head_settings(settings), backbone_kwargs, decoder, decoder_kwargs)
  return MaskRCNN(backbone, num_classes, decoder=decoder_model, name=name,
                  min_level=min_level, max_level=max_level, **options)
