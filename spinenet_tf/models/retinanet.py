"""RetinaNet on a SpineNet or ResNet-FPN backbone: model, label encoding
loss, detection.

    model = build_retinanet('49', num_classes=91, input_shape=(640, 640, 3))
    baseline = build_retinanet('resnet50')  # ResNet-50 + FPN decoder
    outputs = model(images, training=True)        # raw per-level outputs
    losses = model.detection_losses(outputs, gt_boxes, gt_classes)
    detections = model.detect(images)              # boxes, scores, classes, ...

Images go in as the data pipeline normalises them; boxes are
(ymin, xmin, ymax, xmax) pixels of the model input. Class ids follow Model
Garden: slot 0 is background, objects are 1..num_classes-1, -1 is padding.
`model.compile(optimizer)` + `model.fit` work too: `compute_loss` reads
y = {'boxes': [B, M, 4], 'classes': [B, M]}.
"""

import keras
from keras import ops

from spinenet_tf import checks
from spinenet_tf.detection import anchors as anchors_lib
from spinenet_tf.detection import assigner, losses, postprocess
from spinenet_tf.layers.common import (PACKAGE, check_activation,
                                       refuse_unknown_keywords)
from spinenet_tf.layers.retinanet_head import RetinaNetHead
from spinenet_tf.models import pyramid
from spinenet_tf.models.detector import Detector, fixed_image_shape

HEAD_ARGS = ('num_convs', 'num_filters', 'activation', 'use_sync_bn',
             'norm_momentum', 'norm_epsilon', 'kernel_regularizer',
             'prior_probability')
DEFAULTS = dict(
    min_level=3, max_level=7, num_scales=3, aspect_ratios=(0.5, 1.0, 2.0),
    anchor_size=3.0, num_convs=4, num_filters=256, activation='swish',
    use_sync_bn=False, norm_momentum=0.99, norm_epsilon=1e-3,
    kernel_regularizer=None, prior_probability=0.01, positive_threshold=0.5,
    negative_threshold=0.4, box_coder_weights=None, focal_alpha=0.25,
    focal_gamma=1.5, huber_delta=0.1, box_loss_weight=50.0,
    score_threshold=0.05, pre_nms_top_k=5000, iou_threshold=0.5,
    max_detections=100, class_agnostic_nms=False)


def _settings(options):
  """DEFAULTS updated by `options`, checked; unknown keys are a TypeError."""
  refuse_unknown_keywords('RetinaNet', options, DEFAULTS)
  s = {**DEFAULTS, **options}
  for key in ('num_scales', 'num_filters', 'pre_nms_top_k', 'max_detections'):
    checks.integer(key, s[key], 1)
  checks.integer('num_convs', s['num_convs'], 0)
  for key in ('min_level', 'max_level'):
    checks.integer(key, s[key], 1)
  ratios = s['aspect_ratios']
  if not isinstance(ratios, (list, tuple)) or not ratios:
    raise ValueError(f'aspect_ratios must be a non-empty list of positive '
                     f'numbers, got {ratios!r}.')
  for ratio in ratios:
    checks.number('aspect_ratios[i]', ratio, 0, low_open=True)
  for key in ('anchor_size', 'huber_delta', 'norm_epsilon'):
    checks.number(key, s[key], 0, low_open=True)
  checks.number('focal_alpha', s['focal_alpha'], 0, 1)
  checks.number('focal_gamma', s['focal_gamma'], 0)
  checks.number('box_loss_weight', s['box_loss_weight'], 0)
  checks.number('prior_probability', s['prior_probability'], 0, 1,
                low_open=True, high_open=True)
  checks.number('positive_threshold', s['positive_threshold'], 0, 1,
                low_open=True)
  checks.number('negative_threshold', s['negative_threshold'], 0,
                s['positive_threshold'])
  checks.number('score_threshold', s['score_threshold'], 0, 1,
                high_open=True)
  checks.number('iou_threshold', s['iou_threshold'], 0, 1, low_open=True)
  checks.number('norm_momentum', s['norm_momentum'], 0, 1, high_open=True)
  for key in ('use_sync_bn', 'class_agnostic_nms'):
    checks.boolean(key, s[key])
  check_activation(s['activation'])
  weights = s['box_coder_weights']
  if weights is not None and not (
      isinstance(weights, (list, tuple)) and len(weights) == 4):
    raise ValueError(f'box_coder_weights must be None or 4 positive numbers, '
                     f'got {weights!r}.')
  for weight in weights or ():
    checks.number('box_coder_weights[i]', weight, 0, low_open=True)
  return s


@keras.saving.register_keras_serializable(package=PACKAGE)
class RetinaNet(Detector, keras.Model):
  """RetinaNet: `backbone` features [-> `decoder`] -> `RetinaNetHead`, plus
  anchors (a `Detector`).

  Args:
    backbone: a keras.Model with a fixed (height, width, 3) input returning
      {str(level): features}: for min_level..max_level, or what `decoder`
      reads.
    num_classes: class outputs per anchor, background slot 0 included.
    decoder: None (the backbone's features go to the head) or a keras.Model
      from the backbone's features to {str(level): features} for
      min_level..max_level (e.g. `FPN`).
    **options: any key of `DEFAULTS`: anchors (min_level, max_level,
      num_scales, aspect_ratios, anchor_size), head (`HEAD_ARGS`), target
      assignment (positive_threshold, negative_threshold, box_coder_weights),
      loss (focal_alpha, focal_gamma, huber_delta, box_loss_weight) and
      detection (score_threshold, pre_nms_top_k, iou_threshold,
      max_detections, class_agnostic_nms).

  Calling the model returns {'class_outputs': {level: [B, H, W, A * C]},
  'box_outputs': {level: [B, H, W, A * 4]}}.
  """

  LOSS_NAMES = ('total_loss', 'class_loss', 'box_loss', 'num_positives')

  def __init__(self, backbone, num_classes, decoder=None, name='retinanet',
               trainable=True, **options):
    settings = _settings(options)
    checks.integer('num_classes', num_classes, 2)
    image_shape = fixed_image_shape(backbone, 'RetinaNet')
    multilevel_anchors = anchors_lib.generate_anchors(
        image_shape, settings['min_level'], settings['max_level'],
        settings['num_scales'], settings['aspect_ratios'],
        settings['anchor_size'])
    num_anchors = anchors_lib.anchors_per_location(settings['num_scales'],
                                                   settings['aspect_ratios'])
    head = RetinaNetHead(settings['min_level'], settings['max_level'],
                         num_classes, num_anchors, name='head',
                         **{k: settings[k] for k in HEAD_ARGS})
    inputs = keras.Input(shape=image_shape, name='image')
    features = backbone(inputs)
    if decoder is not None:
      features = decoder(features)
    missing = sorted(set(multilevel_anchors) - set(features), key=int)
    if missing:
      raise ValueError(f'the {"decoder" if decoder else "backbone"} '
                       f'{(decoder or backbone).name!r} gives levels '
                       f'{sorted(features, key=int)}, not the head\'s levels '
                       f'{missing}; a ResNet backbone needs decoder=FPN(...).')
    class_outputs, box_outputs = head({level: features[level]
                                       for level in multilevel_anchors})
    for level, anchors in multilevel_anchors.items():
      if tuple(class_outputs[level].shape[1:3]) != anchors.shape[:2]:
        raise ValueError(f'level {level}: features of size '
                         f'{class_outputs[level].shape[1:3]} do not match the '
                         f'anchor grid {anchors.shape[:2]}.')
    super().__init__(inputs=inputs, outputs={'class_outputs': class_outputs,
                                             'box_outputs': box_outputs},
                     name=name, trainable=trainable)
    self.backbone = backbone
    self.decoder = decoder
    self.head = head
    self.num_classes = num_classes
    self.image_shape = image_shape
    self.settings = settings
    self.anchors = anchors_lib.flatten_anchors(multilevel_anchors)

  def flatten_outputs(self, outputs):
    """Raw outputs -> class logits [B, N, C] and box deltas [B, N, 4]."""
    return (anchors_lib.flatten_levels(outputs['class_outputs'],
                                       self.num_classes),
            anchors_lib.flatten_levels(outputs['box_outputs'], 4))

  def detection_losses(self, outputs, gt_boxes, gt_classes):
    """Encodes padded ground truth against the anchors and scores `outputs`.

    Args:
      outputs: what calling the model returned.
      gt_boxes: [B, M, 4] pixel boxes; gt_classes: [B, M], -1 padding.

    Returns:
      dict of scalars total_loss (class + box_loss_weight * box, without
      weight regularisation), class_loss, box_loss, num_positives.
    """
    s = self.settings
    targets = assigner.assign_targets(
        self.anchors, gt_boxes, gt_classes, s['positive_threshold'],
        s['negative_threshold'], box_coder_weights=s['box_coder_weights'])
    class_logits, box_deltas = self.flatten_outputs(outputs)
    return losses.retinanet_losses(
        class_logits, box_deltas, targets, self.num_classes,
        s['focal_alpha'], s['focal_gamma'], s['huber_delta'],
        s['box_loss_weight'])

  def training_losses(self, outputs, labels):
    """`detection_losses` of labels {'boxes', 'classes'}."""
    return self.detection_losses(outputs, labels['boxes'], labels['classes'])

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    """The `fit` loss: detection total_loss plus regularisation losses."""
    del x, sample_weight, training
    loss = self.training_losses(y_pred, y)['total_loss']
    return loss + ops.sum(self.losses) if self.losses else loss

  def postprocess(self, outputs, detect_fn=postprocess.detect):
    """Raw outputs -> padded detections (see `postprocess.detect`; the
    TensorFlow export passes `tf_postprocess.detect`, the same function
    with TF's kernels)."""
    s = self.settings
    class_logits, box_deltas = self.flatten_outputs(outputs)
    return detect_fn(
        class_logits, box_deltas, self.anchors, self.image_shape,
        s['max_detections'], s['score_threshold'], s['pre_nms_top_k'],
        s['iou_threshold'], s['class_agnostic_nms'], s['box_coder_weights'])


def build_retinanet(backbone_model_id='49', num_classes=91,
                    input_shape=(640, 640, 3), min_level=3, max_level=7,
                    backbone_kwargs=None, decoder=None, decoder_kwargs=None,
                    name='retinanet', **options):
  """Builds RetinaNet on a SpineNet or a ResNet backbone.

  Args:
    backbone_model_id: a `build_backbone` model id ('49S', '49', 'mobile-49',
      ...), YAML path or spec list, or a ResNet id ('resnet50', 'resnet101',
      'resnet152').
    num_classes: class outputs per anchor, background slot 0 included (91
      for COCO's category ids).
    input_shape: fixed (height, width, 3); sides divisible by 2**max_level.
    backbone_kwargs: extra `build_backbone` / `build_resnet` options
      (stochastic_depth_rate, ...); activation, use_sync_bn, the norm
      settings and kernel_regularizer are shared with the head (and the
      decoder).
    decoder: None (a ResNet gets 'fpn', a SpineNet none: its outputs are
      the pyramid) or 'fpn' (an `FPN` on any backbone).
    decoder_kwargs: extra `FPN` options (num_filters, kernel_initializer).
    **options: `RetinaNet` options (anchors, head, loss, detection).

  Returns:
    A `RetinaNet`.
  """
  settings = _settings(options)
  checks.integer('num_classes', num_classes, 2)
  backbone, decoder_model = pyramid.build_pyramid(
      backbone_model_id, input_shape, min_level, max_level,
      {k: settings[k] for k in pyramid.SHARED_KEYS}, backbone_kwargs,
      decoder, decoder_kwargs)
  return RetinaNet(backbone, num_classes, decoder=decoder_model, name=name,
                   min_level=min_level, max_level=max_level, **options)
