"""spinenet_tf: SpineNet (scale-permuted backbones), RetinaNet-SpineNet, the
scale-decreased baselines (ResNet-FPN, R0-SP53) and SpinalNet in Keras 3."""

from spinenet_tf.models.backbone import (SpineNet, build_backbone, spinenet_49,
                                         spinenet_49s, spinenet_96,
                                         spinenet_143, spinenet_143l,
                                         spinenet_190, spinenet_mobile_49,
                                         spinenet_mobile_49s,
                                         spinenet_mobile_49xs)
from spinenet_tf.layers.fpn import FPN
from spinenet_tf.models.classifier import build_classifier
from spinenet_tf.models.resnet import ResNet, build_resnet
from spinenet_tf.models.retinanet import RetinaNet, build_retinanet
from spinenet_tf.models.spinal_head import with_spinal_head
from spinenet_tf.models.spinal_vgg import build_spinal_vgg
from spinenet_tf.specs import MODEL_IDS, SCALING, BlockSpec, Scaling

__version__ = '0.1.0'
