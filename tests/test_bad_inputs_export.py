"""Bad inputs at the export boundaries, each with the message a user sees:
the SavedModel's signatures, scripts/export.py, scripts/predict.py and
scripts/convert_checkpoint.py; and evaluation vs serving preprocessing on
one large JPEG (same detections).

CLI cases run the scripts in one subprocess: it loads each script file
and runs its main under `cli.run` (as `python scripts/X.py` does) once per
case, with stderr captured at the file descriptor; tests/test_predict.py
runs the scripts' own entry points.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from spinenet_tf import cli
from spinenet_tf.checkpoints import load_checkpoint, model_checkpoint
from spinenet_tf.data import detection_records
from spinenet_tf.data.detection_input import build_detection_dataset
from spinenet_tf.export.saved_model import (decode_resize_and_pad,
                                            export_saved_model,
                                            remove_stale_staging,
                                            resize_and_pad,
                                            write_directory_atomically)
from spinenet_tf.models.retinanet import build_retinanet
from tests.test_export import randomize_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 128
MODEL = dict(backbone='mobile-49XS', input_size=SIZE, num_classes=3,
             num_convs=1, num_filters=8)
OTHER = dict(MODEL, backbone='mobile-49S', num_filters=16)  # wrong arch


def _build(options, seed=0):
  keras.utils.set_random_seed(seed)
  options = dict(options)
  size = options.pop('input_size')
  return randomize_weights(build_retinanet(
      options.pop('backbone'), options.pop('num_classes'),
      (size, size, 3), **options), seed)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """A model, its config, an export (unfolded: the eval comparison is then
  exact) and checkpoints of another architecture."""
  directory = tmp_path_factory.mktemp('bad_inputs_export')
  model = _build(MODEL)
  config = directory / 'config.yaml'
  config.write_text(yaml.safe_dump({'task': 'detection', 'model': MODEL}))
  export = directory / 'export'
  export_saved_model(model, str(export), fold=False)
  other = _build(OTHER, seed=1)
  other.save_weights(str(directory / 'other.weights.h5'))
  other_ckpt = model_checkpoint(other).write(str(directory / 'ckpt' / 'ckpt'))
  return {'dir': directory, 'model': model, 'config': config,
          'export': export, 'other_h5': directory / 'other.weights.h5',
          'other_ckpt': other_ckpt}


@pytest.fixture(scope='module')
def loaded(files):
  return tf.saved_model.load(str(files['export'])).signatures


def _pixels(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def _numpy(outputs):
  return {k: v.numpy() for k, v in outputs.items()}


def _error(call):
  """The exception a call raises (the test fails if it raises none)."""
  with pytest.raises(Exception) as caught:
    call()
  return caught.value


# --- serving signatures -----------------------------------------------------

SHAPE_MESSAGE = ('serving_default: images must be uint8 [batch, height, '
                 'width, channels] with 3 (RGB), 1 (grey) or 4 (RGBA) '
                 'channels; got shape')


@pytest.mark.parametrize('shape', [(64, 80, 3), (1, 64, 80, 2),
                                   (1, 64, 80, 5), (1, 1, 64, 80, 3)],
                         ids=['3d', '2_channels', '5_channels', '5d'])
def test_serving_default_refuses_shape(loaded, shape):
  error = _error(lambda: loaded['serving_default'](
      images=tf.constant(_pixels(shape))))
  assert isinstance(error, tf.errors.InvalidArgumentError)
  assert SHAPE_MESSAGE in error.message
  assert ' '.join(map(str, shape)) in error.message  # the shape it got


def test_serving_default_converts_grey_and_rgba(loaded):
  serve = loaded['serving_default']
  rgb = _pixels((1, 64, 80, 3))
  grey = rgb[..., :1]
  expected = _numpy(serve(images=tf.constant(rgb)))
  rgba = np.concatenate([rgb, _pixels((1, 64, 80, 1), 5)], -1)
  for name, value in _numpy(serve(images=tf.constant(rgba))).items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  tiled = _numpy(serve(images=tf.constant(np.repeat(grey, 3, -1))))
  for name, value in _numpy(serve(images=tf.constant(grey))).items():
    np.testing.assert_array_equal(value, tiled[name], err_msg=name)


def test_serving_default_float_input_as_documented(loaded):
  serve = loaded['serving_default']
  image = _pixels((1, 64, 80, 3)).astype(np.float32) + 0.75
  # A float tf.Tensor is refused...
  error = _error(lambda: serve(images=tf.constant(image)))
  assert 'uint8' in str(error)
  # ...a numpy float array is truncated to uint8 by TensorFlow first.
  truncated = _numpy(serve(images=np.floor(image).astype(np.uint8)))
  for name, value in _numpy(serve(images=image)).items():
    np.testing.assert_array_equal(value, truncated[name], err_msg=name)
  # An image on the 0..1 scale arrives black (documented in saved_model).
  black = _numpy(serve(images=np.zeros((1, 64, 80, 3), np.uint8)))
  for name, value in _numpy(serve(images=image / 256.0)).items():
    np.testing.assert_array_equal(value, black[name], err_msg=name)


def test_serving_float_takes_the_0_to_255_scale_and_checks_it(loaded):
  pixels = _pixels((2, 64, 80, 3))
  expected = _numpy(loaded['serving_default'](images=tf.constant(pixels)))
  got = _numpy(loaded['serving_float'](
      images=tf.constant(pixels.astype(np.float32))))
  for name, value in got.items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  grey = _numpy(loaded['serving_float'](
      images=tf.constant(pixels[:1, ..., :1].astype(np.float32))))
  assert grey['boxes'].shape[0] == 1
  on_unit_scale = pixels.astype(np.float32) / 255.0
  beyond = pixels.astype(np.float32) * 2.0
  with_nan = pixels.astype(np.float32)
  with_nan[1, 0, 0, 0] = np.nan
  for bad in (on_unit_scale, beyond, with_nan, -pixels.astype(np.float32)):
    error = _error(lambda: loaded['serving_float'](images=tf.constant(bad)))
    assert isinstance(error, tf.errors.InvalidArgumentError)
    assert ('serving_float: images must be finite float32 pixels on the '
            '0..255 scale (an image whose pixels all lie in [0, 1] is on the '
            '0..1 scale: multiply it by 255)') in error.message
  error = _error(lambda: loaded['serving_float'](
      images=tf.constant(np.zeros((64, 80, 3), np.float32))))
  assert ('serving_float: images must be float32 [batch, height, width, '
          'channels]') in error.message
  black = np.zeros((1, 64, 80, 3), np.float32)  # all 0: not the 0..1 scale
  assert loaded['serving_float'](images=tf.constant(black))['boxes'].shape[0]


@pytest.mark.parametrize('serialized, bad', [
    ([b'\xff\xfe\x00 not a proto'], '[0]'),
    ([b'plain text'], '[0]'),
    ([tf.train.Example().SerializeToString(), b'\x89PNG\r\n\x1a\n\xff'],
     '[1]'),
], ids=['binary', 'text', 'second_of_two'])
def test_tf_example_refuses_non_proto(loaded, serialized, bad):
  error = _error(lambda: loaded['tf_example'](
      serialized_examples=tf.constant(serialized)))
  # An op error with our message, never a Python UnicodeDecodeError.
  assert isinstance(error, tf.errors.InvalidArgumentError)
  assert ('tf_example: serialized_examples must be serialized tf.Example '
          'protos with the encoded image as bytes in image/encoded; these '
          f'indices are not:] {bad}') in error.message


def _jpeg(seed=0, shape=(64, 80, 3)):
  return tf.io.encode_jpeg(_pixels(shape, seed)).numpy()


@pytest.mark.parametrize('value, message', [
    ([_jpeg(), b''], 'image_bytes: empty string (0 bytes) at these indices, '
     'expected an encoded JPEG, PNG, GIF or BMP image:] [1]'),
    ([_jpeg()[:len(_jpeg()) // 2]], 'Invalid JPEG data'),
    ([_jpeg()[:20]], 'Invalid JPEG data, size 20'),
    ([b'hello, not an image'], 'Unknown image file format'),
    (_jpeg(), 'image_bytes: image_bytes must be a 1-D string tensor [batch]; '
     'got shape] []'),
], ids=['empty', 'truncated_jpeg', 'jpeg_header_only', 'not_an_image',
        'scalar'])
def test_image_bytes_refuses(loaded, value, message):
  error = _error(lambda: loaded['image_bytes'](
      image_bytes=tf.constant(value)))
  assert isinstance(error, tf.errors.InvalidArgumentError)
  assert message in error.message


# --- evaluation and serving preprocess identically --------------------------


def _large_jpeg(height=900, width=700):
  # Textured (noise, so that resampling matters) with bright rectangles.
  image = _pixels((height, width, 3), 3) // 2
  for y, x, h, w, colour in ((60, 80, 300, 200, (250, 240, 230)),
                             (500, 350, 250, 300, (255, 255, 255)),
                             (420, 40, 120, 160, (250, 60, 60))):
    image[y:y + h, x:x + w] = colour
  return tf.io.encode_jpeg(image, quality=92).numpy(), image


def test_evaluation_and_serving_give_the_same_detections(files, loaded):
  encoded, pixels = _large_jpeg()
  height, width = pixels.shape[:2]
  example = detection_records.make_example(
      encoded, height, width, [[0.1, 0.1, 0.4, 0.4]], [1], source_id=7)
  [record] = detection_records.write_tfrecords(
      str(files['dir'] / 'eval' / 'one'), [example])
  dataset = build_detection_dataset(
      'tfrecord', False, SIZE, 1, file_pattern=record, num_classes=3)
  images, labels = next(iter(dataset))
  # As evaluate_detector: model.detect maps boxes back to original pixels.
  evaluated = _numpy(files['model'].detect(images, labels['image_info']))
  served = _numpy(loaded['image_bytes'](image_bytes=tf.constant([encoded])))
  count = int(evaluated['num_detections'][0])
  assert count > 5 and count == served['num_detections'][0]
  limits = np.array([height, width, height, width], np.float32)
  expected_boxes = np.clip(evaluated['boxes'], 0, limits)  # serving clips
  np.testing.assert_array_equal(served['classes'], evaluated['classes'])
  np.testing.assert_allclose(served['scores'], evaluated['scores'],
                             atol=1e-4)
  np.testing.assert_allclose(served['boxes'], expected_boxes,
                             atol=1e-3 * max(height, width))
  # The network input itself: serving's JPEG preprocessing gives the eval
  # parser's image bit for bit, and the box scale it maps back with.
  image, original, scale = decode_resize_and_pad(encoded, (SIZE, SIZE))
  np.testing.assert_array_equal(image.numpy(), images[0].numpy())
  np.testing.assert_array_equal(original.numpy(), [height, width])
  np.testing.assert_array_equal(scale.numpy(),
                                labels['image_info'][0, 2].numpy())
  # Control: resizing the fully decoded pixels (what image_bytes did before,
  # and what serving_default does with pixels) gives another image.
  full, _ = resize_and_pad(pixels[None], (SIZE, SIZE))
  assert np.abs(full[0].numpy() - images[0].numpy()).mean() > 0.05


# --- staging folders of killed exports --------------------------------------


def test_stale_staging_of_a_killed_export_is_removed(tmp_path):
  write = lambda d: tf.io.gfile.GFile(  # noqa: E731
      os.path.join(d, 'saved_model.pb'), 'w').write('x')
  # A staging folder as a killed export leaves it: its process is gone.
  child = subprocess.run(
      [sys.executable, '-c', 'import os; print(os.getpid())'],
      capture_output=True, text=True, check=True)
  dead = int(child.stdout)
  from spinenet_tf.export import saved_model
  host = saved_model._host()  # pylint: disable=protected-access
  stale = tmp_path / f'.model.tmp-{host}-{dead}-{"a" * 32}'
  stale.mkdir()
  (stale / 'variables').mkdir()
  live = tmp_path / f'.model.tmp-{host}-{os.getppid()}-{"b" * 32}'
  live.mkdir()  # a running export's (our parent process is alive)
  aside = tmp_path / f'.other.old-{host}-{dead}-{"c" * 32}'
  aside.mkdir()  # the only copy of 'other': kept
  unrelated = tmp_path / '.model.tmp-notes'
  unrelated.mkdir()
  write_directory_atomically(tmp_path / 'model', write)
  assert sorted(os.listdir(tmp_path)) == sorted(
      ['model', live.name, aside.name, unrelated.name])
  assert remove_stale_staging(str(tmp_path)) == []


# --- checkpoints of another architecture (library) --------------------------


@pytest.mark.parametrize('kind', ['other_h5', 'other_ckpt'])
def test_load_checkpoint_summarises_a_mismatch(files, kind):
  model = _build(MODEL)
  with pytest.raises(ValueError) as caught:
    load_checkpoint(model, files[kind])
  message = str(caught.value)
  assert '\n' not in message and len(message) < 1000
  assert f'checkpoint {files[kind]} does not match retinanet' in message
  assert 'differ in shape, e.g. ' in message
  assert message.count(' (file (') == 3  # three examples with both shapes


# --- command lines ----------------------------------------------------------

DRIVER = r'''
import json, os, runpy, sys, tempfile, traceback
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
from absl import flags
from spinenet_tf import cli

cases_file, output_file = sys.argv[1:]
base_flags = set(flags.FLAGS)
results = {}
for script, cases in json.load(open(cases_file)).items():
  for name in set(flags.FLAGS) - base_flags:  # the previous script's
    delattr(flags.FLAGS, name)
  if script.endswith('convert_checkpoint.py'):
    from spinenet_tf.export import model_garden_checkpoint as module
    module.define_flags()
    main = module.main
  else:
    main = runpy.run_path(script, run_name='driven')['main']
  for name, args in cases.items():
    flags.FLAGS.unparse_flags()
    with tempfile.TemporaryFile('w+') as err:
      sys.stderr.flush()
      saved = os.dup(2)
      os.dup2(err.fileno(), 2)
      try:
        try:
          cli.run(main, argv=[script, *args])
          code = 0
        except SystemExit as e:
          code = e.code
        except Exception:  # what the interpreter would print and exit with
          traceback.print_exc()
          code = 1
      finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
      err.seek(0)
      results[name] = [code, err.read()]
json.dump(results, open(output_file, 'w'))
'''


def _run_cases(cases, directory):
  """{case: (exit code, stderr)} of each case's arguments to its script
  ({script: {case: args}}), all in one fresh process."""
  cases = {os.path.join(ROOT, 'scripts', script): script_cases
           for script, script_cases in cases.items()}
  with open(directory / 'cases.json', 'w') as f:
    json.dump(cases, f)
  run = subprocess.run(
      [sys.executable, '-c', DRIVER, str(directory / 'cases.json'),
       str(directory / 'results.json')],
      capture_output=True, text=True, timeout=900, cwd=ROOT,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', 'PYTHONPATH': ROOT})
  assert run.returncode == 0, run.stderr[-3000:]
  with open(directory / 'results.json') as f:
    return {name: tuple(result) for name, result in json.load(f).items()}


def _assert_one_line(result, *fragments, status=1):
  code, stderr = result
  assert code == status, stderr[-2000:]
  assert 'Traceback' not in stderr, stderr[-2000:]
  errors = [line for line in stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1, stderr[-2000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  return errors[0]


# File name -> bytes of the user's files that no command may change.
USER_FILES = {'a_run/ckpt-1.index': b'a training run', 'keep.weights.h5':
              b'weights', 'old.tflite': b'old', 'notes.txt': b'notes'}


def _user_files(d):
  """The user's files the export and predict cases aim at; a folder of
  pictures with a sub-folder, links and a text file."""
  for name, data in USER_FILES.items():
    (d / name).parent.mkdir(exist_ok=True)
    (d / name).write_bytes(data)
  png = tf.io.encode_png(_pixels((32, 32, 3))).numpy()
  (d / 'pictures').mkdir()
  (d / 'pictures' / 'a.png').write_bytes(png)
  mixed = d / 'mixed'
  (mixed / 'sub.jpg').mkdir(parents=True)
  (mixed / 'sub.jpg' / 'inner.png').write_bytes(png)
  (mixed / 'ok.png').write_bytes(png)
  (mixed / 'link.png').symlink_to(mixed / 'ok.png')
  (mixed / 'gone.jpg').symlink_to(d / 'no_such_picture.jpg')
  (mixed / 'readme.txt').write_text('not a picture')


@pytest.fixture(scope='module')
def cli_results(files):
  """Every CLI case of export.py, predict.py and convert_checkpoint.py."""
  d = files['dir']
  (d / 'bad.yaml').write_text('task: detection\nmodel: [unclosed\n')
  (d / 'unknown_key.yaml').write_text(yaml.safe_dump(
      {'task': 'detection', 'model': {**MODEL, 'totally_bogus_option': 1}}))
  (d / 'existing').mkdir(exist_ok=True)
  (d / 'text.jpg').write_text('hello, not an image')
  (d / 'empty_export').mkdir(exist_ok=True)
  _user_files(d)
  base = [f'--config_file={files["config"]}']
  out = f'--output_dir={d / "predictions"}'
  converted = f'--output={d / "converted.weights.h5"}'
  return _run_cases({'export.py': {
      'missing_config': [f'--config_file={d / "missing.yaml"}',
                         f'--export_dir={d / "x1"}'],
      'bad_yaml': [f'--config_file={d / "bad.yaml"}',
                   f'--export_dir={d / "x2"}'],
      'unknown_key': [f'--config_file={d / "unknown_key.yaml"}',
                      f'--export_dir={d / "x3"}'],
      'wrong_h5': base + [f'--checkpoint={files["other_h5"]}',
                          f'--export_dir={d / "x4"}'],
      'wrong_ckpt': base + [f'--checkpoint={files["other_ckpt"]}',
                            f'--export_dir={d / "x5"}'],
      'existing_dir': base + [f'--export_dir={d / "existing"}'],
      'no_output': base,
      'overwrite_run': base + [f'--export_dir={d / "a_run"}', '--overwrite'],
      'overwrite_file': base + [f'--export_dir={d / "keep.weights.h5"}',
                                '--overwrite'],
      'tflite_exists': base + [f'--tflite_file={d / "old.tflite"}'],
      'tflite_not_tflite': base + [f'--tflite_file={d / "notes.txt"}',
                                   '--overwrite'],
      'tflite_folder': base + [f'--tflite_file={d / "existing"}'],
      'no_config_flag': [f'--export_dir={d / "x6"}'],
      'verbose': [f'--config_file={d / "missing.yaml"}',
                  f'--export_dir={d / "x7"}', '--verbose'],
  }, 'predict.py': {
      'missing_image': [f'--saved_model={files["export"]}',
                        f'--input={d / "missing.jpg"}', out],
      'not_an_image': [f'--saved_model={files["export"]}',
                       f'--input={d / "text.jpg"}', out],
      'bad_export_dir': [f'--saved_model={d / "empty_export"}',
                         f'--input={d / "text.jpg"}', out],
      'no_model': [f'--input={d / "text.jpg"}', out],
      'output_over_input': [f'--saved_model={files["export"]}',
                            f'--input={d / "pictures"}',
                            f'--output_dir={d / "pictures"}'],
      'mixed_folder': [f'--saved_model={files["export"]}',
                       f'--input={d / "mixed"}',
                       f'--output_dir={d / "mixed_out"}'],
  }, 'convert_checkpoint.py': {
      'missing_checkpoint': [f'--checkpoint={d / "no_ckpt"}',
                             '--model_id=49S', converted],
      'unknown_model_id': [f'--checkpoint={files["other_ckpt"]}',
                           '--model_id=49Z', converted],
      'bad_output_suffix': [f'--checkpoint={files["other_ckpt"]}',
                            '--model_id=49S', f'--output={d / "x.h5"}'],
      'not_a_checkpoint': [f'--checkpoint={files["config"]}',
                           '--model_id=mobile-49XS', converted],
      'missing_flag': ['--model_id=49S', converted],
  }}, d)


@pytest.mark.parametrize('case, fragments, status', [
    ('missing_config', ['config file ', 'missing.yaml: no such file'], 1),
    ('bad_yaml', ['bad.yaml: ', 'flow sequence'], 1),
    ('unknown_key', ['--config_file ', 'unknown_key.yaml: model: ',
                     'totally_bogus_option'], 1),
    ('wrong_h5', ['other.weights.h5 does not match retinanet',
                  'differ in shape, e.g. '], 1),
    ('wrong_ckpt', ['does not match retinanet', 'differ in shape, e.g. '], 1),
    ('existing_dir', ['--export_dir ', 'existing exists; pass --overwrite'],
     1),
    ('no_output', ['give --export_dir and/or --tflite_file'], 1),
    ('overwrite_run', ['a_run is a folder that is not a SavedModel (no '
                       'saved_model.pb); an overwrite replaces only an '
                       'earlier export'], 1),
    ('overwrite_file', ['keep.weights.h5 is a file; an overwrite'], 1),
    ('tflite_exists', ['old.tflite exists; replace it with overwrite=True '
                       '(--overwrite)'], 1),
    ('tflite_not_tflite', ['notes.txt is not a TFLite model'], 1),
    ('tflite_folder', ['existing is a folder; give a file name'], 1),
    ('no_config_flag', ['--config_file'], 2),
])
def test_export_cli(cli_results, case, fragments, status):
  line = _assert_one_line(cli_results[case], *fragments, status=status)
  assert len(line) < 1000


def test_verbose_shows_the_trace(cli_results):
  code, stderr = cli_results['verbose']
  assert code == 1
  assert 'Traceback' in stderr and 'FileNotFoundError: config file ' in stderr


@pytest.mark.parametrize('case, fragments', [
    ('missing_image', ['--input ', 'missing.jpg: no such file or folder']),
    ('not_an_image', ['text.jpg: none of the 1 files could be decoded',
                      'text.jpg: Unknown image file format']),
    ('bad_export_dir', ['--saved_model ', 'empty_export: not a SavedModel '
                        'folder (no saved_model.pb)']),
    ('no_model', ['give either --saved_model or --config_file']),
])
def test_predict_cli(cli_results, case, fragments):
  _assert_one_line(cli_results[case], *fragments)


def test_no_command_changed_a_file_it_was_not_asked_to_replace(
    cli_results, files):
  # Before: --overwrite deleted a run folder or a file given as
  # --export_dir, --tflite_file replaced any file, and predict wrote its
  # PNG over an input picture of the same name.
  d = files['dir']
  assert {name: (d / name).read_bytes() for name in USER_FILES} == USER_FILES
  assert (d / 'pictures' / 'a.png').read_bytes() == (
      d / 'mixed' / 'ok.png').read_bytes()
  _assert_one_line(cli_results['output_over_input'], '--output_dir ',
                   'the results would replace the input ', 'a.png; write '
                   'them to another folder')


def test_predict_leaves_out_sub_folders_and_broken_links_with_counts(
    cli_results, files):
  # Before: a sub-folder or broken link named like a picture stopped the
  # whole run; files of other extensions were dropped without a word.
  code, stderr = cli_results['mixed_folder']
  assert not code, stderr[-2000:]  # 0 or None: a clean exit
  assert ('left out 1 broken links, 1 files of other extensions, 1 '
          'sub-folders (not searched).') in stderr
  out = files['dir'] / 'mixed_out'
  images = json.loads((out / 'images.json').read_text())
  assert [i['file_name'] for i in images] == ['link.png', 'ok.png']
  assert sorted(p.name for p in out.glob('*.png')) == ['link.png', 'ok.png']


@pytest.mark.parametrize('case, fragments, status', [
    ('missing_checkpoint', ['--checkpoint ', 'no_ckpt: no such checkpoint'],
     1),
    ('unknown_model_id', ["--model_id '49Z': unknown; expected one of ",
                          '49S'], 1),
    ('bad_output_suffix', ['--output ', 'x.h5: must end with .weights.h5'],
     1),
    ('not_a_checkpoint', ['--checkpoint ', 'config.yaml: not a readable TF2 '
                          'checkpoint'], 1),
    ('missing_flag', ['--checkpoint'], 2),
])
def test_convert_cli(cli_results, case, fragments, status):
  _assert_one_line(cli_results[case], *fragments, status=status)


def _exit(main, capsys):
  """(status, stderr) of `main` under cli.guarded."""
  with pytest.raises(SystemExit) as exit_:
    cli.guarded(main)()
  return exit_.value.code, capsys.readouterr().err


def test_only_errors_about_the_input_are_one_line(capsys):
  from spinenet_tf import checks

  # Raised by this project about a value the user gave: one line.
  status, err = _exit(lambda: checks.integer('--num_shards', 'two'), capsys)
  assert status == 1 and err == (
      "error: --num_shards must be an integer, got 'two'.\n")
  # A library's ValueError is a bug of ours (before: one line, the
  # traceback lost): the traceback, then a line that says so.
  status, err = _exit(lambda: np.zeros(3).reshape(2), capsys)
  assert status == 1
  assert 'Traceback' in err and 'cannot reshape array of size 3' in err
  assert err.rstrip().splitlines()[-1] == cli.BUG_LINE
  # A file the user named that is not there: one line.
  status, err = _exit(lambda: open('/no/such/file.yaml'), capsys)
  assert err.startswith('error: [Errno 2] No such file or directory')
  assert 'Traceback' not in err
