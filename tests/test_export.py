"""Export: BatchNorm folding, the SavedModel (in a fresh process, through
saved_model_cli, on bad inputs), atomic writes, model configs and
checkpoints."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from spinenet_tf.checkpoints import load_checkpoint, untracked_variables
from spinenet_tf import compat
from spinenet_tf.export import model_config
from spinenet_tf.models import factory
from spinenet_tf.export.fold_batchnorm import (FoldedConv, fold_batchnorm,
                                               max_abs_difference)
from spinenet_tf.export.saved_model import (ServingModule,
                                            center_crop_and_resize,
                                            export_saved_model, normalize,
                                            resize_and_pad,
                                            write_directory_atomically)
from spinenet_tf.models.classifier import build_classifier
from spinenet_tf.models.retinanet import build_retinanet

SIZE = 128
DETECTOR = dict(backbone_model_id='mobile-49XS', num_classes=4,
                input_shape=(SIZE, SIZE, 3), num_convs=2, num_filters=16)
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable),
                               'saved_model_cli')


def randomize_weights(model, seed=0):
  """BN statistics and head weights that make folding matter and give
  detections with spread-out scores (a fresh model's are all ~0.01)."""
  rng = np.random.default_rng(seed)
  for v in model.weights:
    if 'moving_variance' in v.path or 'gamma' in v.path:
      v.assign(rng.uniform(0.5, 1.5, v.shape))
    elif 'moving_mean' in v.path or 'beta' in v.path:
      v.assign(rng.normal(0.0, 0.1, v.shape))
  head = getattr(model, 'head', None)
  if head is not None:
    for conv in (*head.class_convs, *head.box_convs, head.class_logits,
                 head.box_deltas):
      fan_in = np.prod(conv.kernel.shape[:3])
      conv.kernel.assign(rng.normal(0.0, 2 * fan_in**-0.5, conv.kernel.shape))
    head.class_logits.bias.assign(np.full(head.class_logits.bias.shape, -1.5))
  return model


def tiny_detector(seed=0):
  keras.utils.set_random_seed(seed)
  return randomize_weights(build_retinanet(**DETECTOR), seed)


def random_pixels(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def assert_detections_close(actual, expected, score_atol=1e-5,
                            box_atol=1e-3):
  np.testing.assert_array_equal(actual['num_detections'],
                                expected['num_detections'])
  np.testing.assert_array_equal(actual['classes'], expected['classes'])
  np.testing.assert_allclose(actual['scores'], expected['scores'],
                             atol=score_atol)
  np.testing.assert_allclose(actual['boxes'], expected['boxes'],
                             atol=box_atol)


# --- folding -----------------------------------------------------------------


@pytest.mark.parametrize('depthwise', [False, True])
def test_folded_conv_equals_conv_then_batch_norm(depthwise):
  rng = np.random.default_rng(0)
  conv = (keras.layers.DepthwiseConv2D(3, strides=2, padding='same')
          if depthwise else
          keras.layers.Conv2D(6, 3, strides=2, padding='same', use_bias=True))
  norm = keras.layers.BatchNormalization(epsilon=1e-3)
  x = rng.normal(size=(2, 9, 9, 4)).astype(np.float32)
  norm.build(conv.compute_output_shape(x.shape))
  conv.build(x.shape)
  for v in (*conv.weights, *norm.weights):
    v.assign(rng.uniform(0.5, 1.5, v.shape))
  expected = norm(conv(x), training=False)
  np.testing.assert_allclose(FoldedConv.from_layers(conv, norm)(x), expected,
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('build', [
    tiny_detector,
    lambda: randomize_weights(build_classifier(3, '49S', (SIZE, SIZE, 3))),
], ids=['retinanet_mobile49xs', 'classifier_49s'])
def test_folded_model_matches_unfolded(build):
  model = build()
  before = [w.copy() for w in model.get_weights()]
  images = np.random.default_rng(1).normal(
      size=(2, SIZE, SIZE, 3)).astype(np.float32)
  folded = fold_batchnorm(model)
  assert not any(isinstance(l, keras.layers.BatchNormalization)
                 for l in compat.sublayers(folded)
                 if 'head_norm' not in l.name)
  scale = max(float(np.abs(t).max())
              for t in tf.nest.flatten(model(images, training=False)))
  assert max_abs_difference(model, folded, images) <= 1e-5 * max(scale, 1)
  # bfloat16 keeps 8 significant bits (0.4% a value). Through the network
  # the unfolded model under mixed_bfloat16 moves the outputs by 0.74%
  # (detector) and 0.33% (classifier) of their scale; the bfloat16 fold
  # by 0.96% and 0.23% (measured 2026-12-07). It may add no more error
  # than bfloat16 itself does, and stays under 2%.
  bf16 = fold_batchnorm(model, 'bfloat16')
  assert keras.config.dtype_policy().name == 'float32'
  with compat.dtype_policy_scope('mixed_bfloat16'):
    unfolded_bf16 = model.__class__.from_config(model.get_config())
  unfolded_bf16.set_weights(model.get_weights())
  folded_error = max_abs_difference(model, bf16, images)
  assert folded_error <= 2 * max_abs_difference(model, unfolded_bf16, images)
  assert folded_error <= 0.02 * max(scale, 1)
  for old, new in zip(before, model.get_weights()):
    np.testing.assert_array_equal(old, new)  # the original is untouched


# --- SavedModel --------------------------------------------------------------


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  model = tiny_detector()
  path = str(tmp_path_factory.mktemp('export') / 'retinanet')
  export_saved_model(model, path, extra_files={'note.txt': 'hello'})
  return model, path


FRESH_PROCESS = r'''
import json, sys
import numpy as np
import tensorflow as tf

path, inputs_file, outputs_file = sys.argv[1:]
loaded = tf.saved_model.load(path)
serve = loaded.signatures['serving_default']
image_bytes = loaded.signatures['image_bytes']
tf_example = loaded.signatures['tf_example']
inputs = np.load(inputs_file)
square, wide = inputs['square'], inputs['wide']
encoded = [tf.io.encode_png(image[0]).numpy() for image in (square, wide)]
examples = [tf.train.Example(features=tf.train.Features(feature={
    'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[e]))})).SerializeToString() for e in encoded]
results = {}

def record(name, fn, **kwargs):
  try:
    outputs = fn(**kwargs)
    results[name] = {k: [v.shape.as_list(), v.numpy().ravel().tolist()]
                     for k, v in outputs.items()}
  except Exception as e:  # every failure is reported, none ends the process
    results[name] = {'error': type(e).__name__, 'message': str(e)}

record('square', serve, images=tf.constant(square))
record('wide', serve, images=tf.constant(wide))
record('bytes', image_bytes, image_bytes=tf.constant(encoded))
record('examples', tf_example, serialized_examples=tf.constant(examples))
record('float_images', serve, images=tf.constant(square, tf.float32))
record('rank_3', serve, images=tf.constant(square[0]))
record('empty_batch', serve, images=tf.zeros([0, 50, 60, 3], tf.uint8))
record('empty_bytes', image_bytes, image_bytes=tf.constant([], tf.string))
record('zero_height', serve, images=tf.zeros([1, 0, 60, 3], tf.uint8))
record('one_pixel', serve, images=tf.fill([1, 1, 1, 3], tf.constant(9, tf.uint8)))
record('large', serve, images=tf.zeros([1, 4000, 6000, 3], tf.uint8))
record('corrupt_bytes', image_bytes,
       image_bytes=tf.constant([encoded[0], b'\x89PNG garbage']))
record('no_image_feature', tf_example, serialized_examples=tf.constant(
    [tf.train.Example().SerializeToString()]))
with open(outputs_file, 'w') as f:
  json.dump(results, f)
'''


@pytest.fixture(scope='module')
def fresh_process_results(exported, tmp_path_factory):
  _, path = exported
  directory = tmp_path_factory.mktemp('fresh')
  square = random_pixels((1, SIZE, SIZE, 3), 1)
  wide = random_pixels((1, 96, 200, 3), 2)
  np.savez(directory / 'inputs.npz', square=square, wide=wide)
  run = subprocess.run(
      [sys.executable, '-c', FRESH_PROCESS, path,
       str(directory / 'inputs.npz'), str(directory / 'outputs.json')],
      capture_output=True, text=True, timeout=600,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert run.returncode == 0, run.stderr[-3000:]
  with open(directory / 'outputs.json') as f:
    results = json.load(f)
  return {'square': square, 'wide': wide}, results


def _numpy(result):
  assert 'error' not in result, result
  return {k: np.reshape(values, shape) for k, (shape, values) in
          result.items()}


def test_fresh_process_outputs_equal_keras_model(exported,
                                                 fresh_process_results):
  model, _ = exported
  inputs, results = fresh_process_results
  square = _numpy(results['square'])
  expected = {k: v.numpy() for k, v in
              model.detect(normalize(inputs['square'])).items()}
  assert expected['num_detections'][0] > 10  # scores are spread out
  assert_detections_close(square, expected)

  # A 96x200 image: scaled by 128/200 into the top left, boxes mapped back.
  padded, scale = resize_and_pad(inputs['wide'], (SIZE, SIZE))
  expected = {k: v.numpy() for k, v in model.detect(padded).items()}
  limits = np.array([96, 200, 96, 200], np.float32)
  expected['boxes'] = np.minimum(expected['boxes'] / np.tile(scale, 2),
                                 limits)
  wide = _numpy(results['wide'])
  assert_detections_close(wide, expected)
  assert (wide['boxes'] <= limits).all() and (wide['boxes'] >= 0).all()

  # PNG bytes of both sizes in one batch, and the same as tf.Examples.
  encoded = _numpy(results['bytes'])
  assert_detections_close(encoded, {k: np.concatenate([square[k], wide[k]])
                                     for k in square})
  for k, v in _numpy(results['examples']).items():
    np.testing.assert_array_equal(v, encoded[k])


def test_fresh_process_bad_inputs(fresh_process_results):
  _, results = fresh_process_results
  assert 'expected to be a uint8 tensor' in results['float_images']['message']
  assert results['rank_3']['error'] == 'InvalidArgumentError'
  assert ('images must be uint8 [batch, height, width, channels]' in
          results['rank_3']['message'])
  for name in ('empty_batch', 'empty_bytes'):
    empty = _numpy(results[name])
    assert empty['boxes'].shape == (0, 100, 4)
    assert empty['num_detections'].shape == (0,)
  assert results['zero_height']['error'] == 'InvalidArgumentError'
  assert 'at least 1x1 pixels' in results['zero_height']['message']
  assert results['corrupt_bytes']['error'] == 'InvalidArgumentError'
  assert 'Unknown image file format' in results['corrupt_bytes']['message']
  assert results['no_image_feature']['error'] == 'InvalidArgumentError'
  assert 'image/encoded' in results['no_image_feature']['message']
  for name, (height, width) in (('one_pixel', (1, 1)),
                                ('large', (4000, 6000))):
    boxes = _numpy(results[name])['boxes']
    assert boxes.shape == (1, 100, 4)
    assert (boxes >= 0).all()
    assert (boxes <= [height, width, height, width]).all()


def test_saved_model_cli_lists_signatures(exported):
  _, path = exported
  run = subprocess.run([SAVED_MODEL_CLI, 'show', '--dir', path, '--all'],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert run.returncode == 0, run.stderr[-3000:]
  text = run.stdout
  signatures = {}
  for block in text.split("signature_def['")[1:]:
    signatures[block.split("'")[0]] = ' '.join(block.split())
  assert set(signatures) >= {'serving_default', 'image_bytes', 'tf_example'}
  # Unknown shapes: every input reaches the checks in the graph.
  inputs = {'serving_default': ('images', 'DT_UINT8', 'unknown_rank'),
            'image_bytes': ('image_bytes', 'DT_STRING', 'unknown_rank'),
            'tf_example': ('serialized_examples', 'DT_STRING',
                           'unknown_rank')}
  outputs = {'boxes': ('DT_FLOAT', '(-1, 100, 4)'),
             'scores': ('DT_FLOAT', '(-1, 100)'),
             'classes': ('DT_INT32', '(-1, 100)'),
             'num_detections': ('DT_INT32', '(-1)')}
  for key, (name, dtype, shape) in inputs.items():
    block = signatures[key]
    assert (f"inputs['{name}'] tensor_info: dtype: {dtype} "
            f'shape: {shape}') in block
    for output, (dtype, shape) in outputs.items():
      assert (f"outputs['{output}'] tensor_info: dtype: {dtype} "
              f'shape: {shape}') in block
  with open(os.path.join(path, 'assets.extra', 'note.txt')) as f:
    assert f.read() == 'hello'


def _op_types(concrete_function):
  graph = concrete_function.graph.as_graph_def()
  nodes = [*graph.node, *(n for f in graph.library.function
                          for n in f.node_def)]
  return {node.op for node in nodes}


def _xla_functions(concrete_function):
  """The op types of each function in the graph's library that XLA must
  compile."""
  library = concrete_function.graph.as_graph_def().library.function
  return [{node.op for node in f.node_def} for f in library
          if f.attr['_XlaMustCompile'].b]


def test_xla_serving_compiles_the_network_and_keeps_the_fused_nms(tmp_path):
  # jit_compile=True compiles the network alone: the fused NMS (which XLA
  # cannot compile) runs after it, and the detections, saved and loaded
  # back, stay the static path's (model.detect) and the plain export's.
  model = tiny_detector()
  pixels = random_pixels((2, SIZE, SIZE, 3), 3)
  default = ServingModule(model)
  compiled = export_saved_model(model, tmp_path / 'xla', jit_compile=True)
  assert not _xla_functions(default.serve_images.get_concrete_function())
  serving = compiled.serve_images.get_concrete_function()
  (network_ops,) = _xla_functions(serving)
  assert 'Conv2D' in network_ops
  assert 'CombinedNonMaxSuppression' not in network_ops
  assert 'CombinedNonMaxSuppression' in _op_types(serving)
  loaded = tf.saved_model.load(str(tmp_path / 'xla'))
  plain = {k: v.numpy() for k, v in default.serve_images(pixels).items()}
  xla = {k: v.numpy() for k, v in
         loaded.signatures['serving_default'](images=pixels).items()}
  static = {k: v.numpy() for k, v in model.detect(normalize(pixels)).items()}
  assert plain['num_detections'].min() > 10
  assert_detections_close(plain, static)
  assert_detections_close(xla, static)


def test_classifier_serving_module():
  keras.utils.set_random_seed(0)
  model = randomize_weights(build_classifier(5, 'mobile-49XS',
                                             (SIZE, SIZE, 3)))
  module = ServingModule(model, top_k=3)
  images = random_pixels((2, 150, 200, 3))
  outputs = {k: v.numpy() for k, v in module.serve_images(images).items()}
  expected = model(center_crop_and_resize(images, (SIZE, SIZE)),
                   training=False).numpy()
  np.testing.assert_allclose(outputs['logits'], expected, atol=1e-4)
  np.testing.assert_allclose(outputs['probabilities'].sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(outputs['top_k_classes'],
                                np.argsort(-expected, axis=-1)[:, :3])
  assert outputs['top_k_probabilities'].shape == (2, 3)
  empty = module.serve_images(np.zeros((0, 10, 10, 3), np.uint8))
  assert empty['logits'].shape == (0, 5)
  assert empty['top_k_classes'].shape == (0, 3)


def test_serving_needs_a_fixed_size():
  model = build_classifier(2, 'mobile-49XS', (None, None, 3))
  with pytest.raises(ValueError, match='fixed input size'):
    ServingModule(model)


# --- atomic writes -----------------------------------------------------------


def _write_files(directory):
  with open(os.path.join(directory, 'saved_model.pb'), 'w') as f:
    f.write('new')


def test_write_directory_atomically(tmp_path):
  target = tmp_path / 'model'
  write_directory_atomically(target, _write_files)
  assert (target / 'saved_model.pb').read_text() == 'new'
  umask = os.umask(0)
  os.umask(umask)
  assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 700

  (target / 'saved_model.pb').write_text('old')
  with pytest.raises(FileExistsError):
    write_directory_atomically(target, _write_files)
  assert (target / 'saved_model.pb').read_text() == 'old'

  def interrupted(directory):
    _write_files(directory)
    raise KeyboardInterrupt
  with pytest.raises(KeyboardInterrupt):
    write_directory_atomically(target, interrupted, overwrite=True)
  assert (target / 'saved_model.pb').read_text() == 'old'
  with pytest.raises(KeyboardInterrupt):
    write_directory_atomically(tmp_path / 'other', interrupted)
  assert not (tmp_path / 'other').exists()

  write_directory_atomically(target, _write_files, overwrite=True)
  assert (target / 'saved_model.pb').read_text() == 'new'
  assert sorted(os.listdir(tmp_path)) == ['model']  # no staging leftovers


# --- configs and checkpoints -------------------------------------------------


def _config(task='detection', **model):
  return {'task': task, 'model': {'backbone': 'mobile-49XS',
                                  'input_size': SIZE, 'num_classes': 3,
                                  **model}}


def test_build_model_from_config():
  detector = factory.build_model_from_config(
      _config(num_convs=1, num_filters=8, input_size=[128, 256]))
  assert detector.image_shape == (128, 256, 3)
  assert detector.head.num_convs == 1
  classifier = factory.build_model_from_config(
      _config('classification', dropout_rate=0.1))
  assert classifier.output.shape == (None, 3)


@pytest.mark.parametrize('config, message', [
    ({'task': 'segmentation', 'model': {}}, 'task must be one of'),
    ({'task': 'detection', 'model': {'backbone': '49'}}, 'model needs'),
    ({'task': 'detection', 'model': {}, 'train': {}}, 'unknown config keys'),
    (['task'], 'must be a mapping'),
    ('task: [detection', 'expected'),
])
def test_bad_configs_name_the_file(tmp_path, config, message):
  path = tmp_path / 'bad.yaml'
  path.write_text(config if isinstance(config, str) else
                  yaml.safe_dump(config))
  with pytest.raises(ValueError, match=f'(?s)bad.yaml: .*{message}'):
    model_config.load_config(path)


def test_bad_input_size():
  with pytest.raises(ValueError, match='input_size'):
    factory.build_model_from_config(_config(input_size=[128]))


def test_load_checkpoint_weights_h5_and_tf_checkpoint(tmp_path):
  config = _config('classification', backbone='49S', num_classes=2)
  source = randomize_weights(factory.build_model_from_config(config))
  source.save_weights(str(tmp_path / 'model.weights.h5'))
  tf.train.Checkpoint(model=source).save(str(tmp_path / 'ckpt' / 'ckpt'))
  for path in (tmp_path / 'model.weights.h5', tmp_path / 'ckpt'):
    target = factory.build_model_from_config(config)
    load_checkpoint(target, path)
    for a, b in zip(source.get_weights(), target.get_weights()):
      np.testing.assert_array_equal(a, b)
  with pytest.raises(FileNotFoundError, match='no TF checkpoint'):
    load_checkpoint(target, tmp_path)


@pytest.mark.parametrize('build', [
    tiny_detector,
    lambda seed=0: randomize_weights(build_classifier(
        3, '49S', (SIZE, SIZE, 3), head='spinal'), seed),
], ids=['retinanet_mobile49xs', 'spinal_classifier_49s'])
def test_tf_checkpoint_holds_every_variable(tmp_path, build):
  # Layers held in lists (head towers, Mobile resampling convs, spinal
  # layers) must reach TF checkpoints: the trainer saves through them.
  source, target = build(seed=0), build(seed=1)
  checkpoint = tf.train.Checkpoint(model=source)
  assert untracked_variables(checkpoint, source) == []
  prefix = checkpoint.write(str(tmp_path / 'ckpt'))
  saved = [name for name, _ in tf.train.list_variables(prefix)
           if name.endswith('VARIABLE_VALUE')]
  assert len(saved) == len(source.weights)
  load_checkpoint(target, prefix)
  for a, b in zip(source.weights, target.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
