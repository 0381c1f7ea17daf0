"""Model Garden's models, our oracle in tests and benchmarks: its SpineNet
and SpineNet-Mobile (each with Model Garden's own scaling of the variant),
ResNet, RetinaNet-ResNet-FPN and ResNet classifier, with helpers that make
every variable matter and save checkpoints of them."""
import numpy as np
import tensorflow as tf
import tf_keras
from official.vision.modeling.backbones import spinenet, spinenet_mobile

MOBILE = 'mobile-'


def build_reference(model_id, size):
  """Model Garden's backbone for our `model_id` ('49', 'mobile-49XS', ...)
  with its own SCALING_MAP entry, fixed square input `size`."""
  input_specs = tf_keras.layers.InputSpec(shape=[None, size, size, 3])
  if model_id.startswith(MOBILE):
    return spinenet_mobile.SpineNetMobile(
        input_specs=input_specs,
        **spinenet_mobile.SCALING_MAP[model_id[len(MOBILE):]])
  return spinenet.SpineNet(input_specs=input_specs,
                           **spinenet.SCALING_MAP[model_id])


def randomize_batch_norm(model, seed=0):
  """Non-trivial BN statistics so that every variable affects the output."""
  rng = np.random.default_rng(seed)
  for v in model.weights:
    name = v.name
    if 'moving_variance' in name or 'gamma' in name:
      v.assign(rng.uniform(0.5, 1.5, v.shape))
    elif 'moving_mean' in name or 'beta' in name:
      v.assign(rng.normal(0.0, 0.1, v.shape))


def save_reference_checkpoint(model, directory):
  return tf.train.Checkpoint(backbone=model).save(str(directory) + '/ckpt')


def build_reference_resnet(depth, size, activation='relu', depth_multiplier=1.0):
  """Model Garden's ResNet-`depth` backbone (levels 2..5), input `size`."""
  from official.vision.modeling.backbones import resnet

  return resnet.ResNet(
      model_id=depth, activation=activation, depth_multiplier=depth_multiplier,
      input_specs=tf_keras.layers.InputSpec(shape=[None, size, size, 3]))


def build_reference_retinanet_fpn(depth, size, num_classes, activation='relu',
                                  depth_multiplier=1.0, num_filters=256):
  """Model Garden's RetinaNet on ResNet-`depth` + FPN (levels 3..7, 9
  anchors), as its retinanet_resnetfpn_coco experiment builds it;
  `num_filters`: FPN and head width."""
  from official.vision.modeling import retinanet_model
  from official.vision.modeling.decoders import fpn
  from official.vision.modeling.heads import dense_prediction_heads
  from official.vision.modeling.layers import detection_generator

  backbone = build_reference_resnet(depth, size, activation, depth_multiplier)
  decoder = fpn.FPN(input_specs=backbone.output_specs, min_level=3,
                    max_level=7, num_filters=num_filters, activation=activation)
  head = dense_prediction_heads.RetinaNetHead(
      min_level=3, max_level=7, num_classes=num_classes,
      num_anchors_per_location=9, num_filters=num_filters,
      activation=activation)
  model = retinanet_model.RetinaNetModel(
      backbone, decoder, head,
      detection_generator.MultilevelDetectionGenerator(), min_level=3,
      max_level=7, num_scales=3, aspect_ratios=[0.5, 1.0, 2.0],
      anchor_size=3.0)
  model(tf.zeros([1, size, size, 3]), training=True)  # builds the head
  return model


def build_reference_resnet_classifier(depth, size, num_classes,
                                      depth_multiplier=1.0):
  """Model Garden's ImageNet-style classifier on ResNet-`depth`."""
  from official.vision.modeling import classification_model

  return classification_model.ClassificationModel(
      build_reference_resnet(depth, size, depth_multiplier=depth_multiplier),
      num_classes=num_classes,
      input_specs=tf_keras.layers.InputSpec(shape=[None, size, size, 3]))


def save_reference_model(model, directory):
  """Saves as Model Garden's trainer does: the model under 'model/'."""
  return tf.train.Checkpoint(model=model).save(str(directory) + '/ckpt')


def build_reference_maskrcnn(experiment, size, num_classes, model_id=None,
                             **head_overrides):
  """Model Garden's Mask R-CNN as its `experiment` config builds it
  ('maskrcnn_spinenet_coco', 'maskrcnn_resnetfpn_coco') at `size`, with
  `num_classes`, optionally another SpineNet `model_id`, and head settings
  by dotted name ('detection_head.num_convs': 1, ...)."""
  from official.core import exp_factory
  from official.vision.modeling import factory

  model_config = exp_factory.get_exp_config(experiment).task.model
  model_config.input_size = [size, size, 3]
  model_config.num_classes = num_classes
  if model_id is not None:
    model_config.backbone.spinenet.model_id = model_id
  for dotted, value in head_overrides.items():
    head, key = dotted.split('.')
    setattr(getattr(model_config, head), key, value)
  model = factory.build_maskrcnn(
      tf_keras.layers.InputSpec(shape=[None, size, size, 3]), model_config)
  model(tf.zeros([1, size, size, 3]), image_shape=tf.constant([[size, size]],
                                                              tf.float32),
        training=False)  # builds the heads
  return model, model_config
