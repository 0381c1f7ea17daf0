"""Bad inputs to the train command (scripts/train.py) and what the user gets.

Each case runs the command as a user would (a subprocess) and asserts the
one stderr line `error: ...` it ends with (exit status != 0, no traceback),
or, for a recoverable input, the warning and the run that goes on:

  truncated latest checkpoint   resumes from the older one, warning names it
  every checkpoint corrupt      error naming the folder; params.yaml as it was
  --mode=eval, no checkpoint    error naming the folder
  --num_gpus without --strategy error naming both flags
  unknown --experiment          error listing the known experiments
  --config_file missing         error naming the file
  bad --params_override key     error naming the dotted key
  all-bad training records      error naming the file pattern and the
                                counts; params.yaml as it was
  NaN loss                      error naming the last good checkpoint, which
                                is intact; the summaries written so far are
                                on disk

Runs that are independent go side by side (each imports TensorFlow).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.join(os.path.dirname(__file__), '..')
# SGD, no clipping, the learning rate times 1e30 after step 4: steps 1..4
# are sane (checkpoints 2 and 4), a run that goes on blows up.
SMALL = ('train_data.synthetic_num_images=8,eval_data.synthetic_num_images=4,'
         'train_data.global_batch_size=4,eval_data.global_batch_size=4,'
         'trainer.steps_per_loop=2,trainer.checkpoint_interval=2,'
         'trainer.train_steps=4,model.num_convs=1,optimizer.type=sgd,'
         'optimizer.global_clipnorm=null,schedule.type=step,'
         'schedule.warmup_steps=0,schedule.warmup_learning_rate=0.0,'
         'schedule.boundaries=[4],schedule.multipliers=[1.0e+30]')


def start(*args, experiment='demo_retinanet_synthetic', model_dir=None,
          data_dir=None):
  command = [sys.executable, os.path.join(ROOT, 'scripts', 'train.py')]
  if experiment:
    command.append(f'--experiment={experiment}')
  if model_dir:
    command += [f'--model_dir={model_dir}', f'--data_dir={data_dir}',
                f'--params_override={SMALL}']
  return subprocess.Popen(
      command + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})


def finish(*procs, timeout=300):
  """(returncode, stdout, stderr) of each, waiting for them all."""
  results = []
  for proc in procs:
    out, err = proc.communicate(timeout=timeout)
    results.append((proc.returncode, out, err))
  return results


def error_line(result):
  """The one `error:` line of a failed run (asserting there is one)."""
  code, _, stderr = result
  assert code not in (0, None), stderr[-3000:]
  assert 'Traceback' not in stderr, stderr[-3000:]
  lines = [l for l in stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1, stderr[-3000:]
  assert stderr.rstrip().endswith(lines[0]), stderr[-3000:]
  return lines[0]


def truncate(path):
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])


def write_garbage_records(path, count=6):
  """A valid TFRecord file whose payloads are not tf.train.Example protos."""
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(path) as writer:
    for _ in range(count):
      writer.write(rng.integers(0, 256, 64, dtype=np.uint8).tobytes())


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A run with checkpoints 2 and 4 (and its synthetic data)."""
  root = tmp_path_factory.mktemp('bad_inputs')
  model_dir, data_dir = root / 'run', root / 'shapes'
  code, _, stderr = finish(start(model_dir=model_dir, data_dir=data_dir))[0]
  assert code == 0, stderr[-3000:]
  assert [os.path.basename(p) for p in tf.train.get_checkpoint_state(
      str(model_dir)).all_model_checkpoint_paths] == ['ckpt-2', 'ckpt-4']
  return root, model_dir, data_dir


def copy_run(trained, name):
  root, model_dir, data_dir = trained
  copy = root / name
  shutil.copytree(model_dir, copy)
  return copy, data_dir


@pytest.fixture(scope='module')
def checkpoint_runs(trained):
  """Side by side: a truncated latest checkpoint (trained on to step 4),
  every checkpoint corrupt (asked for 6 steps, so a rewritten params.yaml
  would differ), a NaN stop (on to step 8, one step a loop)."""
  truncated, data_dir = copy_run(trained, 'truncated')
  truncate(str(truncated / 'ckpt-4.data-00000-of-00001'))
  corrupt, _ = copy_run(trained, 'corrupt')
  for name in ('ckpt-2', 'ckpt-4'):
    truncate(str(corrupt / f'{name}.data-00000-of-00001'))
  params = (corrupt / 'params.yaml').read_bytes()
  nan, _ = copy_run(trained, 'nan')
  results = finish(
      start(model_dir=truncated, data_dir=data_dir),
      start('--params_override=trainer.train_steps=6', model_dir=corrupt,
            data_dir=data_dir),
      start('--params_override=trainer.train_steps=8,'
            'trainer.steps_per_loop=1', model_dir=nan, data_dir=data_dir))
  return {'truncated': (truncated, results[0]),
          'corrupt': (corrupt, results[1], params),
          'nan': (nan, results[2])}


@pytest.fixture(scope='module')
def quick_runs(tmp_path_factory):
  """Errors found before or just after the model is built, two at a time."""
  root = tmp_path_factory.mktemp('quick')
  data_dir = root / 'shapes'  # never written: no case reads it
  bad_data = root / 'bad_records'
  bad_data.mkdir()
  for i in range(2):
    write_garbage_records(str(bad_data / f'train-{i}.tfrecord'))
  pattern = str(bad_data / 'train-*.tfrecord')
  bad_data_dir = root / 'bad_data_run'
  bad_data_dir.mkdir()
  (bad_data_dir / 'params.yaml').write_bytes(b'# an earlier run\nseed: 1\n')
  other_model_dir = root / 'other_model_run'
  other_model_dir.mkdir()
  (other_model_dir / 'params.yaml').write_text(
      'task: detection\nmodel: {num_classes: 7, score_threshold: 0.5}\n')
  runs = {
      'experiment': lambda: start('--model_dir=' + str(root / 'x'),
                                  experiment='retinanet_spinenet49_cocoo'),
      'config_file': lambda: start(
          '--model_dir=' + str(root / 'x'),
          '--config_file=' + str(root / 'missing.yaml'), experiment=None),
      'override': lambda: start('--params_override=trainer.steps_per_lop=3',
                                model_dir=root / 'x', data_dir=data_dir),
      'eval': lambda: start('--mode=eval', model_dir=root / 'empty',
                            data_dir=data_dir),
      'num_gpus': lambda: start('--num_gpus=2', model_dir=root / 'x',
                                data_dir=data_dir),
      # synthetic_num_images back to its default: the source is records.
      'records': lambda: start(
          '--params_override=train_data.source=tfrecord,'
          f'train_data.file_pattern={pattern},'
          'train_data.synthetic_num_images=256',
          model_dir=bad_data_dir, data_dir=data_dir),
      'other_model': lambda: start(model_dir=other_model_dir,
                                   data_dir=data_dir),
  }
  results, names = {}, list(runs)
  for i in range(0, len(names), 2):
    pair = names[i:i + 2]
    for name, result in zip(pair, finish(*[runs[n]() for n in pair])):
      results[name] = result
  results['root'] = root
  results['pattern'] = pattern
  results['bad_data_dir'] = bad_data_dir
  results['other_model_dir'] = other_model_dir
  return results


def test_a_run_of_another_model_is_not_resumed(quick_runs):
  # Before: its checkpoint was restored into the other model (or failed
  # deep in TF), and its params.yaml rewritten. The detection settings
  # (score_threshold here) change no weight and may differ.
  folder = quick_runs['other_model_dir']
  assert error_line(quick_runs['other_model']) == (
      f'error: {folder} holds a run of another model (model.num_classes: 7 '
      '-> 4): give its params.yaml as --config_file to go on with it, or '
      'another --model_dir.')
  assert (folder / 'params.yaml').read_text().startswith('task: detection\n')


def test_truncated_latest_checkpoint_resumes_from_the_older_one(
    checkpoint_runs):
  model_dir, (code, _, stderr) = checkpoint_runs['truncated']
  assert code == 0, stderr[-3000:]
  bad, good = str(model_dir / 'ckpt-4'), str(model_dir / 'ckpt-2')
  assert f'checkpoint {bad} cannot be read (IndexError' in stderr
  assert f'Restored {good} at step 2.' in stderr
  assert 'Traceback' not in stderr
  # Trained on from step 2 and wrote a whole ckpt-4 again.
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir)))
  assert reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE') == 4
  for name in reader.get_variable_to_shape_map():
    reader.get_tensor(name)  # readable


def test_every_checkpoint_corrupt_is_one_error_naming_the_folder(
    checkpoint_runs):
  model_dir, result, _ = checkpoint_runs['corrupt']
  line = error_line(result)
  assert line.startswith(f'error: no intact checkpoint in {model_dir}: ')
  assert str(model_dir / 'ckpt-4') in line and str(model_dir / 'ckpt-2') in line


def test_failed_restore_leaves_params_yaml_unchanged(checkpoint_runs):
  model_dir, result, params = checkpoint_runs['corrupt']
  assert result[0] != 0
  assert (model_dir / 'params.yaml').read_bytes() == params
  assert b'train_steps: 4' in params  # the run asked for 6


def test_nan_stop_keeps_last_good_checkpoint_and_flushed_summaries(
    checkpoint_runs):
  model_dir, result = checkpoint_runs['nan']
  line = error_line(result)
  latest = tf.train.latest_checkpoint(str(model_dir))
  assert line.startswith('error: Non-finite loss in steps ')
  assert line.endswith(f'The last good checkpoint is {latest}.')
  reader = tf.train.load_checkpoint(latest)
  for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if isinstance(value, np.ndarray) and value.dtype.kind == 'f':
      assert np.all(np.isfinite(value)), name
  # Step 5 ran (one step a loop) before the stop: its scalars are on disk.
  steps = {event.step
           for path in tf.io.gfile.glob(str(model_dir / 'train' / 'events.*'))
           for event in tf.compat.v1.train.summary_iterator(path)
           if any(v.tag == 'loss' for v in event.summary.value)}
  assert 5 in steps, sorted(steps)


def test_unknown_experiment_lists_the_known_ones(quick_runs):
  line = error_line(quick_runs['experiment'])
  assert line.startswith("error: unknown --experiment "
                         "'retinanet_spinenet49_cocoo'; known: [")
  assert "'retinanet_spinenet49_coco'" in line


def test_missing_config_file_is_named(quick_runs):
  line = error_line(quick_runs['config_file'])
  assert line == (f"error: --config_file "
                  f"'{quick_runs['root'] / 'missing.yaml'}' "
                  'does not exist.')


def test_bad_override_key_is_named(quick_runs):
  line = error_line(quick_runs['override'])
  assert "unknown config key 'trainer.steps_per_lop'" in line


def test_eval_without_checkpoint_names_the_folder(quick_runs):
  line = error_line(quick_runs['eval'])
  empty = quick_runs['root'] / 'empty'
  assert line == f'error: --mode=eval: no checkpoint in {empty}.'


def test_a_device_flag_without_its_strategy_is_refused(quick_runs):
  # Before: --num_gpus=2 (or --tpu) without --strategy trained on one device.
  assert error_line(quick_runs['num_gpus']) == (
      "error: --num_gpus=2 needs --strategy=mirrored (strategy is "
      "'one_device'); without it the run would use one device.")


@pytest.mark.parametrize('tpu', ['my-tpu-node', 'grpc://10.0.0.2:8470'])
def test_a_remote_tpu_is_refused_before_it_is_contacted(tpu):
  # Before: a TPU Node was connected to, and the input pipeline, placed on
  # its host, failed there at its first tf.py_function.
  from spinenet_tf.training.strategy import build_strategy
  with pytest.raises(ValueError) as error:
    build_strategy('tpu', tpu=tpu)
  assert str(error.value).startswith(
      f'--tpu={tpu}: a remote TPU (TPU Node) runs the input pipeline on its '
      'own host')
  assert str(error.value).endswith('--strategy=tpu (--tpu=local).')


def test_all_bad_training_records_name_the_pattern(quick_runs):
  line = error_line(quick_runs['records'])
  assert line.startswith(f"error: train_data: No valid records in "
                         f"file_pattern {quick_runs['pattern']!r} (2 files): ")
  assert '12 records read, 12 skipped' in line  # 2 files of 6 non-Examples


def test_failed_start_on_bad_data_leaves_params_yaml_unchanged(quick_runs):
  assert quick_runs['records'][0] != 0
  assert (quick_runs['bad_data_dir'] / 'params.yaml').read_bytes() == (
      b'# an earlier run\nseed: 1\n')
