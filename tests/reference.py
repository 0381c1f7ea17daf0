"""Builds Model Garden's SpineNet (our oracle) with a variant's scaling."""
import numpy as np
import tensorflow as tf
import tf_keras
from official.vision.modeling.backbones import spinenet, spinenet_mobile

from spinenet_tf import specs


def build_reference(model_id, size):
  """The reference backbone for `model_id`, fixed square input `size`."""
  scaling = specs.SCALING[model_id]
  input_specs = tf_keras.layers.InputSpec(shape=[None, size, size, 3])
  if scaling.family == specs.SPINENET:
    return spinenet.SpineNet(
        input_specs=input_specs,
        endpoints_num_filters=scaling.endpoints_num_filters,
        resample_alpha=scaling.resample_alpha,
        block_repeats=scaling.block_repeats,
        filter_size_scale=scaling.filter_size_scale)
  return spinenet_mobile.SpineNetMobile(
      input_specs=input_specs,
      endpoints_num_filters=scaling.endpoints_num_filters,
      block_repeats=scaling.block_repeats,
      filter_size_scale=scaling.filter_size_scale)


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
