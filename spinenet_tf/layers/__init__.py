"""Keras 3 layers of SpineNet (and SpinalNet)."""

from spinenet_tf.layers.blocks import (BottleneckBlock, MBConvBlock,
                                       ResidualBlock, SqueezeExcite)
from spinenet_tf.layers.common import ConvNormAct
from spinenet_tf.layers.fusion import BlockFusion
from spinenet_tf.layers.resample import MobileResample, Resample
from spinenet_tf.layers.retinanet_head import RetinaNetHead
from spinenet_tf.layers.spinal_dense import SpinalDense
from spinenet_tf.layers.stochastic_depth import StochasticDepth
