"""Mask R-CNN as a model: the training call samples and scores on the
accelerator (the whole step compiles under XLA and equals the eager one),
detections carry masks, options are checked and the model round-trips
through its config."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.export.saved_model import ServingModule
from spinenet_tf.models.maskrcnn import MaskRCNN, build_maskrcnn

SIZE, CLASSES = 128, 5
TINY = dict(
    backbone_kwargs={'filter_size_scale': 0.25, 'endpoints_num_filters': 32},
    rpn_num_filters=32, box_num_convs=1, box_num_filters=32, fc_dims=64,
    mask_num_convs=1, mask_num_filters=32, rpn_pre_nms_top_k=200,
    rpn_num_proposals=100, rpn_test_pre_nms_top_k=100,
    rpn_test_num_proposals=50, num_sampled_rois=64, num_sampled_masks=16,
    max_detections=20, seed=1)


def _batch():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, SIZE, SIZE, 3)).astype('float32')
  labels = {
      'boxes': np.array([[[10, 10, 60, 70], [50, 40, 120, 100], [0, 0, 0, 0]],
                         [[30, 20, 90, 110], [0, 0, 0, 0], [0, 0, 0, 0]]],
                        'float32'),
      'classes': np.array([[1, 3, -1], [4, -1, -1]], 'int32'),
      'masks': (rng.uniform(size=(2, 3, 28, 28)) > 0.5).astype('float32')}
  return images, labels


@pytest.fixture(scope='module')
def model():
  return build_maskrcnn('49S', CLASSES, (SIZE, SIZE, 3), **TINY)


def test_training_step_compiles_under_xla_and_equals_the_eager_step():
  """With every candidate sampled (XLA draws other random numbers than
  TF's kernels), the compiled losses equal the eager ones."""
  images, labels = _batch()
  model = build_maskrcnn('49S', CLASSES, (SIZE, SIZE, 3), **{
      **TINY, 'rpn_batch_size_per_im': 10**6, 'rpn_fg_fraction': 1.0,
      'num_sampled_rois': TINY['rpn_num_proposals'] + 3,
      'foreground_fraction': 1.0})

  def losses(images, labels):
    outputs = model(model.training_inputs(images, labels), training=True)
    return model.training_losses(outputs, labels)

  eager = losses(images, labels)
  compiled = tf.function(losses, jit_compile=True)(images, labels)
  assert set(eager) == set(MaskRCNN.LOSS_NAMES)
  for name in MaskRCNN.LOSS_NAMES:
    assert np.isfinite(float(eager[name])) and float(eager[name]) > 0, name
    np.testing.assert_allclose(float(compiled[name]), float(eager[name]),
                               rtol=1e-4, err_msg=name)
  np.testing.assert_allclose(
      float(eager['total_loss']),
      sum(float(eager[k]) for k in MaskRCNN.LOSS_NAMES[1:]), rtol=1e-6)


def test_training_call_samples_the_configured_counts(model):
  images, labels = _batch()
  outputs = model(model.training_inputs(images, labels), training=True)
  foreground = np.asarray(outputs['roi_classes']) > 0
  assert foreground.sum() >= 3  # the ground truth mixed in at least
  assert outputs['mask_outputs'].shape == (2, 16, 28, 28)
  sampled = np.asarray(outputs['rpn_targets']['score_targets']) >= 0
  assert list(sampled.sum(axis=1)) == [256, 256]


def test_a_gradient_step_lowers_the_loss_of_the_same_samples(model):
  images, labels = _batch()
  optimizer = keras.optimizers.SGD(0.02)
  state = model.seed_generator.state.numpy()

  def loss():
    model.seed_generator.state.assign(state)
    outputs = model(model.training_inputs(images, labels), training=True)
    return model.training_losses(outputs, labels)['total_loss']

  before = float(loss())
  for _ in range(3):
    with tf.GradientTape() as tape:
      value = loss()
    grads = tape.gradient(value, model.trainable_variables)
    assert all(g is not None for g in grads)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
  assert float(loss()) < before


def test_detections_carry_masks(model):
  images, _ = _batch()
  detections = model.detect(images)
  spec = model.output_spec()
  for name, (shape, dtype) in spec.items():
    assert tuple(detections[name].shape) == (2, *shape), name
    assert detections[name].dtype == dtype, name
  masks = np.asarray(detections['masks'])
  assert masks.min() >= 0.0 and masks.max() <= 1.0
  count = np.asarray(detections['num_detections'])
  classes = np.asarray(detections['classes'])
  for image in range(2):
    assert np.all((classes[image, :count[image]] >= 1)
                  & (classes[image, :count[image]] < CLASSES))
    assert np.all(classes[image, count[image]:] == -1)


def test_config_round_trip_rebuilds_the_same_model(model):
  clone = MaskRCNN.from_config(model.get_config())
  assert clone.count_params() == model.count_params()
  assert clone.settings == model.settings


@pytest.mark.parametrize('options,error,message', [
    ({'rpn_nms_threshold': 0.5}, TypeError, "'rpn_nms_threshold'"),
    ({'num_sampled_rois': 0}, ValueError, 'num_sampled_rois'),
    ({'foreground_fraction': 1.5}, ValueError, 'foreground_fraction'),
    ({'rpn_unmatched_threshold': 0.9}, ValueError, 'rpn_unmatched_threshold'),
    ({'box_coder_weights': [1, 2]}, ValueError, 'box_coder_weights'),
    ({'max_level': 8}, ValueError, 'max_level'),
])
def test_bad_options_are_refused_by_name(options, error, message):
  with pytest.raises(error, match=message):
    build_maskrcnn('49S', CLASSES, (SIZE, SIZE, 3), **options)


def test_savedmodel_export_is_refused_until_it_serves_masks(model):
  with pytest.raises(ValueError, match="MaskRCNN 'maskrcnn': its SavedModel "
                     'export .* is not implemented yet'):
    ServingModule(model)
