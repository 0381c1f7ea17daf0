"""kill -9 in the middle of training: the same command, run again, resumes
at the last checkpoint and ends with exactly the weights of an uninterrupted
run (trainer.deterministic: op determinism, and the input position saved
with each checkpoint, so the resumed run reads the batches the uninterrupted
one did). A checkpoint torn by the kill (files written, not yet recorded in
the `checkpoint` state file) is ignored."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from spinenet_tf import configs
from spinenet_tf.training import config as config_lib
from spinenet_tf.training import train_input
from spinenet_tf.training.tasks import build_task

ROOT = os.path.join(os.path.dirname(__file__), '..')
TRAIN_STEPS, INTERVAL = 16, 4
OVERRIDE = ('train_data.synthetic_num_images=16,'
            'eval_data.synthetic_num_images=8,'
            'train_data.global_batch_size=4,eval_data.global_batch_size=4,'
            f'trainer.steps_per_loop=2,trainer.checkpoint_interval={INTERVAL},'
            f'trainer.train_steps={TRAIN_STEPS},trainer.max_to_keep=5,'
            'trainer.deterministic=true,model.num_convs=1')
SKIP = ('_CHECKPOINTABLE_OBJECT_GRAPH', train_input.ITERATOR_KEY)


def start(model_dir, data_dir, log_prefix):
  """scripts/train.py in the background; stdout/stderr go to files."""
  out, err = open(log_prefix + '.out', 'w'), open(log_prefix + '.err', 'w')
  try:
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'scripts', 'train.py'),
         '--experiment=demo_retinanet_synthetic', f'--model_dir={model_dir}',
         f'--data_dir={data_dir}', f'--params_override={OVERRIDE}'],
        stdout=out, stderr=err,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  finally:
    out.close()
    err.close()


def finish(proc, log_prefix, timeout=240):
  proc.wait(timeout=timeout)
  with open(log_prefix + '.err') as f:
    stderr = f.read()
  assert proc.returncode == 0, stderr[-3000:]
  return stderr


def checkpoint_step(path):
  return int(path.rsplit('-', 1)[1])


def tear_checkpoint(model_dir, saved, step):
  """What a kill during `manager.save(step)` can leave: a temporary shard
  directory and half-written final files, not listed in the state file."""
  source = f'{saved}.data-00000-of-00001'
  with open(source, 'rb') as f:
    data = f.read()
  prefix = os.path.join(model_dir, f'ckpt-{step}')
  os.makedirs(prefix + '_temp', exist_ok=True)
  with open(os.path.join(prefix + '_temp', 'part-00000-of-00001.data-00000-'
                         'of-00001'), 'wb') as f:
    f.write(data[:len(data) // 3])
  with open(prefix + '.data-00000-of-00001', 'wb') as f:
    f.write(data[:len(data) // 2])
  with open(prefix + '.index', 'wb') as f:
    f.write(b'\x00torn')


def read_all(path):
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path) if name not in SKIP}


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
  data_dir = str(tmp_path / 'shapes')
  reference_dir, faulted_dir = str(tmp_path / 'ref'), str(tmp_path / 'fault')
  logs = str(tmp_path / 'log')
  # The runs share the synthetic dataset, written here once.
  config = config_lib.load_experiment(
      configs.path('demo_retinanet_synthetic'),
      [OVERRIDE])
  build_task(config, data_dir)._ensure_synthetic('synthetic', data_dir)
  procs = []
  try:
    # Side by side: tracing, most of a run's time, is one core each.
    reference = start(reference_dir, data_dir, logs + '_ref')
    faulted = start(faulted_dir, data_dir, logs + '_fault')
    procs += [reference, faulted]
    deadline = time.monotonic() + 240
    saved = None
    while saved is None:
      saved = tf.train.latest_checkpoint(faulted_dir)
      assert faulted.poll() is None, 'the run ended before it was killed'
      assert time.monotonic() < deadline, 'no checkpoint written'
      time.sleep(0.05)
    faulted.send_signal(signal.SIGKILL)
    faulted.wait(timeout=60)
    assert faulted.returncode == -signal.SIGKILL

    # The checkpoint the state file names is whole and readable.
    saved = tf.train.latest_checkpoint(faulted_dir)
    saved_step = checkpoint_step(saved)
    assert saved_step in range(INTERVAL, TRAIN_STEPS, INTERVAL), saved
    reader = tf.train.load_checkpoint(saved)
    assert reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE') == saved_step
    assert reader.has_tensor(train_input.ITERATOR_KEY)
    tear_checkpoint(faulted_dir, saved, saved_step + INTERVAL)

    resumed = start(faulted_dir, data_dir, logs + '_resume')
    procs.append(resumed)
    stderr = finish(resumed, logs + '_resume')
    assert f'Restored {saved} at step {saved_step}.' in stderr
    assert 'holds no input position' not in stderr
    finish(reference, logs + '_ref')
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()

  final = tf.train.latest_checkpoint(faulted_dir)
  assert checkpoint_step(final) == TRAIN_STEPS
  expected = read_all(tf.train.latest_checkpoint(reference_dir))
  assert checkpoint_step(tf.train.latest_checkpoint(reference_dir)) == (
      TRAIN_STEPS)
  got = read_all(final)
  assert sorted(got) == sorted(expected)
  for name, value in expected.items():
    if np.asarray(value).dtype.kind == 'f':
      np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6,
                                 err_msg=name)
    else:
      np.testing.assert_array_equal(got[name], value, err_msg=name)
  # Training moved the weights after the resume point (not a vacuous match).
  before = read_all(os.path.join(reference_dir, f'ckpt-{saved_step}'))
  assert any(not np.array_equal(before[name], value)
             for name, value in expected.items()
             if np.asarray(value).dtype.kind == 'f')


MIRRORED_SCRIPT = '''
import numpy as np, tensorflow as tf
from spinenet_tf.training import strategy as strategy_lib, train_input
strategy_lib.use_logical_cpus(2)
strategy = strategy_lib.build_strategy('mirrored')
assert strategy.num_replicas_in_sync == 2

def dataset_fn(context):
  batch = context.get_per_replica_batch_size(6)
  return tf.data.Dataset.range(60).shuffle(20, seed=1).batch(batch).repeat()

def local(values):
  return [t.numpy().tolist()
          for t in strategy.experimental_local_results(values)]

ours = train_input.CheckpointableInput(strategy, dataset_fn)
theirs = iter(strategy.distribute_datasets_from_function(dataset_fn))
for _ in range(3):
  assert local(next(ours)) == local(next(theirs))
checkpoint = tf.train.Checkpoint(iterator=ours.iterator)
path = checkpoint.write(%r)
expected = [local(next(ours)) for _ in range(12)]
restored = train_input.CheckpointableInput(strategy, dataset_fn)
tf.train.Checkpoint(iterator=restored.iterator).read(path).assert_consumed()
assert [local(next(restored)) for _ in range(12)] == expected
print('OK')
'''


def test_checkpointable_input_feeds_mirrored_replicas_like_tf_distribute(
    tmp_path):
  """Two replicas get the batches distribute_datasets_from_function gives
  them, and a restored iterator goes on where the saved one was."""
  result = subprocess.run(
      [sys.executable, '-c', MIRRORED_SCRIPT % str(tmp_path / 'input')],
      capture_output=True, text=True, timeout=120, cwd=ROOT,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 0 and 'OK' in result.stdout, (
      result.stderr[-3000:])
