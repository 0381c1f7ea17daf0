"""The model code is backend-portable: the same weights give the same
features under the Keras JAX backend as under TensorFlow, the JAX training
step (spinenet_tf.training.jax_step) computes the TensorFlow loss, gradients
and BatchNorm statistics, and scripts/bench_jax.py reports its figures."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import spinenet_tf
from spinenet_tf.models.maskrcnn import build_maskrcnn
from spinenet_tf.training.optimization import l2_penalty

ROOT = os.path.dirname(os.path.dirname(__file__))
JAX_ENV = dict(os.environ, KERAS_BACKEND='jax', JAX_PLATFORMS='cpu')

pytestmark = pytest.mark.skipif(importlib.util.find_spec('jax') is None,
                                reason='jax is not installed')

_JAX_FORWARD = textwrap.dedent('''
    import sys
    import numpy as np
    import keras
    assert keras.backend.backend() == 'jax', keras.backend.backend()
    import spinenet_tf
    weights, images, out = sys.argv[1:4]
    model = spinenet_tf.build_backbone('mobile-49XS', (None, None, 3),
                                       stochastic_depth_rate=0.1)
    model.load_weights(weights)
    features = model(np.load(images), training=False)
    np.savez(out, **{k: np.asarray(v) for k, v in features.items()})
''')


def test_backbone_forward_under_jax_matches_tensorflow(tmp_path):
  model = spinenet_tf.build_backbone('mobile-49XS', (None, None, 3),
                                     stochastic_depth_rate=0.1)
  for v in model.weights:
    v.assign(np.random.default_rng(len(v.path)).normal(1.0, 0.1, v.shape))
  images = np.random.default_rng(0).uniform(0, 1, (2, 128, 128, 3)).astype('float32')
  model.save_weights(str(tmp_path / 'w.weights.h5'))
  np.save(tmp_path / 'images.npy', images)
  subprocess.run([sys.executable, '-c', _JAX_FORWARD, str(tmp_path / 'w.weights.h5'),
                  str(tmp_path / 'images.npy'), str(tmp_path / 'jax.npz')],
                 check=True, env=JAX_ENV, cwd=ROOT)
  jax_features = np.load(tmp_path / 'jax.npz')
  tf_features = model(images, training=False)
  assert sorted(jax_features.files) == sorted(tf_features)
  for level, value in tf_features.items():
    np.testing.assert_allclose(jax_features[level], np.asarray(value),
                               rtol=1e-4, atol=1e-4)


# One SGD step (learning rate 1, no momentum: the update is minus the
# gradient) of a small RetinaNet in float64 under JAX.
_JAX_TRAIN_STEP = textwrap.dedent('''
    import sys
    import keras
    import numpy as np
    keras.mixed_precision.set_global_policy('float64')
    import spinenet_tf
    from spinenet_tf.training import jax_step
    weights, inputs, out = sys.argv[1:4]
    model = spinenet_tf.build_retinanet('mobile-49XS', 4, (128, 128, 3),
                                        num_convs=1, num_filters=16)
    model.load_weights(weights)
    data = np.load(inputs)
    optimizer = keras.optimizers.SGD(1.0, momentum=0.0)
    step = jax_step.train_step(model, optimizer, jax_step.detection_loss,
                               l2_weight_decay=1e-3)
    state = jax_step.initial_state(model, optimizer)
    before = [np.asarray(w) for w in state[0]]
    state, losses = step(state, data['images'], {'boxes': data['boxes'],
                                                 'classes': data['classes']})
    jax_step.write_state(model, optimizer, state)
    np.savez(out, **{k: np.asarray(v) for k, v in losses.items()},
             **{f'grad{i}': b - v.numpy() for i, (b, v) in
                enumerate(zip(before, model.trainable_variables))},
             **{f'moving{i}': v.numpy()
                for i, v in enumerate(model.non_trainable_variables)})
''')


@pytest.fixture
def float64_policy():
  keras.mixed_precision.set_global_policy('float64')
  yield
  keras.mixed_precision.set_global_policy('float32')


def test_retinanet_train_step_under_jax_matches_tensorflow(tmp_path,
                                                           float64_policy):
  model = spinenet_tf.build_retinanet('mobile-49XS', 4, (128, 128, 3),
                                      num_convs=1, num_filters=16)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 128, 128, 3))
  boxes = np.zeros((2, 6, 4))
  boxes[:, :3] = [[8, 8, 60, 50], [40, 30, 120, 126], [70, 0, 100, 40]]
  classes = np.array([[1, 2, 3, -1, -1, -1], [3, 1, -1, -1, -1, -1]])
  model.save_weights(str(tmp_path / 'w.weights.h5'))
  np.savez(tmp_path / 'inputs.npz', images=images, boxes=boxes,
           classes=classes)
  subprocess.run([sys.executable, '-c', _JAX_TRAIN_STEP,
                  str(tmp_path / 'w.weights.h5'), str(tmp_path / 'inputs.npz'),
                  str(tmp_path / 'jax.npz')],
                 check=True, env=dict(JAX_ENV, JAX_ENABLE_X64='1'), cwd=ROOT)
  jax_result = np.load(tmp_path / 'jax.npz')

  variables = model.trainable_variables
  with tf.GradientTape() as tape:
    outputs = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32),
                                    model(images, training=True))
    losses = model.detection_losses(outputs, boxes, classes)
    loss = losses['total_loss'] + l2_penalty(variables, 1e-3)
  grads = tape.gradient(loss, variables)

  assert float(losses['num_positives']) > 0
  np.testing.assert_allclose(jax_result['loss'], float(loss), rtol=1e-5)
  for name in ('class_loss', 'box_loss', 'num_positives'):
    np.testing.assert_allclose(jax_result[name], float(losses[name]),
                               rtol=1e-5, err_msg=name)
  scale = max(float(tf.reduce_max(tf.abs(g))) for g in grads)
  for i, (grad, variable) in enumerate(zip(grads, variables)):
    np.testing.assert_allclose(jax_result[f'grad{i}'], grad.numpy(),
                               rtol=1e-3, atol=1e-4 * scale,
                               err_msg=variable.path)
  for i, variable in enumerate(model.non_trainable_variables):
    np.testing.assert_allclose(jax_result[f'moving{i}'], variable.numpy(),
                               rtol=1e-5, atol=1e-7, err_msg=variable.path)


def test_bench_jax_quick_run_reports_every_row(tmp_path):
  report = tmp_path / 'jax.json'
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'bench_jax.py'),
       '--quick', f'--output_json={report}'],
      capture_output=True, text=True, env=JAX_ENV, cwd=ROOT, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(report) as f:
    rows = json.load(f)['rows']
  assert [r['name'].split(',')[0] for r in rows] == [
      'SpineNet-mobile-49XS backbone forward',
      'RetinaNet-SpineNet-mobile-49XS forward',
      'RetinaNet-SpineNet-mobile-49XS training step']
  backbone, detector, training = rows
  assert 0 < backbone['flops'] < detector['flops'] < training['flops']
  assert backbone['params'] < detector['params'] == training['params']
  for row in rows:
    assert row['images_per_s'] > 0 and row['tflops_per_s'] > 0
  assert training['loss']['last'] < training['loss']['first']
  assert '| RetinaNet-SpineNet-mobile-49XS training step' in result.stdout


# A small Mask R-CNN whose sampling takes every candidate (JAX and
# TensorFlow draw other random numbers): one JAX training step.
MASKRCNN = dict(
    backbone_model_id='49S', num_classes=4, input_shape=[256, 256, 3],
    max_level=6,
    rpn_num_filters=16, box_num_convs=1, box_num_filters=16, fc_dims=32,
    mask_num_convs=1, mask_num_filters=16, rpn_pre_nms_top_k=100,
    rpn_num_proposals=40, rpn_batch_size_per_im=10**6, rpn_fg_fraction=1.0,
    num_sampled_rois=43, foreground_fraction=1.0, num_sampled_masks=8,
    backbone_kwargs={'filter_size_scale': 0.25, 'endpoints_num_filters': 16})
_JAX_MASKRCNN_STEP = textwrap.dedent('''
    import json
    import sys
    import keras
    import numpy as np
    from spinenet_tf.models.maskrcnn import build_maskrcnn
    from spinenet_tf.training import jax_step
    weights, inputs, out, options = sys.argv[1:5]
    model = build_maskrcnn(**json.loads(options))
    model.load_weights(weights)
    data = np.load(inputs)
    optimizer = keras.optimizers.SGD(1.0, momentum=0.0)
    step = jax_step.train_step(model, optimizer, jax_step.detection_loss)
    state = jax_step.initial_state(model, optimizer)
    before = [np.asarray(w) for w in state[0]]
    state, losses = step(state, data['images'], {
        'boxes': data['boxes'], 'classes': data['classes'],
        'masks': data['masks']})
    jax_step.write_state(model, optimizer, state)
    np.savez(out, **{k: np.asarray(v) for k, v in losses.items()},
             **{f'grad{i}': b - v.numpy() for i, (b, v) in
                enumerate(zip(before, model.trainable_variables))})
''')


def test_maskrcnn_train_step_under_jax_matches_tensorflow(tmp_path):
  """The RPN head's score kernel is scaled up, so that proposals are not
  near-ties that rounding could reorder."""
  model = build_maskrcnn(**MASKRCNN)
  scores = model.rpn_head.scores.kernel
  scores.assign(np.random.default_rng(1).normal(0, 0.2, scores.shape))
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 256, 256, 3)).astype('float32')
  boxes = np.zeros((2, 3, 4), 'float32')
  boxes[:, :2] = [[16, 16, 120, 100], [80, 60, 240, 252]]
  classes = np.array([[1, 3, -1], [2, -1, -1]], 'int32')
  masks = (rng.uniform(size=(2, 3, 28, 28)) > 0.5).astype('float32')
  model.save_weights(str(tmp_path / 'w.weights.h5'))
  np.savez(tmp_path / 'inputs.npz', images=images, boxes=boxes,
           classes=classes, masks=masks)
  subprocess.run([sys.executable, '-c', _JAX_MASKRCNN_STEP,
                  str(tmp_path / 'w.weights.h5'), str(tmp_path / 'inputs.npz'),
                  str(tmp_path / 'jax.npz'), json.dumps(MASKRCNN)],
                 check=True, env=JAX_ENV, cwd=ROOT)
  jax_result = np.load(tmp_path / 'jax.npz')

  labels = {'boxes': boxes, 'classes': classes, 'masks': masks}
  variables = model.trainable_variables
  with tf.GradientTape() as tape:
    losses = model.training_losses(
        model(model.training_inputs(images, labels), training=True), labels)
  grads = tape.gradient(losses['total_loss'], variables)
  for name in model.LOSS_NAMES:  # the box loss starts near 1e-5
    np.testing.assert_allclose(jax_result[name], float(losses[name]),
                               rtol=1e-4, atol=1e-7, err_msg=name)
  # The heads' gradients: in float32 the backbone's, through many
  # randomly initialised BatchNorms over few values per channel, differ by
  # up to 3% of the largest gradient (rounding; the RetinaNet test above
  # compares a backbone's in float64); the heads' by 1.1e-4 (measured).
  top = max(float(tf.reduce_max(tf.abs(g))) for g in grads)
  heads = [i for i, v in enumerate(variables)
           if v.path.split('/')[0] in ('rpn_head', 'box_head', 'mask_head')]
  assert len(heads) == len(model.rpn_head.trainable_variables
                           + model.box_head.trainable_variables
                           + model.mask_head.trainable_variables)
  for i in heads:
    np.testing.assert_allclose(jax_result[f'grad{i}'], grads[i].numpy(),
                               rtol=1e-3, atol=5e-4 * top,
                               err_msg=variables[i].path)
