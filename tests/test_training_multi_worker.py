"""MultiWorkerMirroredStrategy: scripts/train.py as 2 worker processes on
localhost (TF_CONFIG) trains a tiny demo config 4 steps; both finish, the
chief's checkpoint is in model_dir and the copy the other worker must
write (a collective) is removed at once: no model_dir/.worker_tmp/ is
left. BatchNorm is synchronized: without it each worker keeps the moving
statistics of its own images (Keras 3 updates a replica's copy of them
only), which then differ, and so would the workers' detections below.

The run is train_and_eval: the evaluation after step 4 runs under the
strategy, each worker on its share of the 7 validation images (4 and 3: the
last batch is partial, padded and masked), and the chief's metrics equal a
single-device evaluation of the chief's checkpoint in this process.

The workers write the synthetic dataset themselves, into one data_dir at
the same time, and read the single train file sharded by record."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import tensorflow as tf

from spinenet_tf.data import detection_input, synthetic_shapes
from spinenet_tf.data.skipping import SkipCounter

ROOT = os.path.join(os.path.dirname(__file__), '..')
NUM_EVAL = 7  # not divisible by the global batch
TINY = ('train_data.synthetic_num_images=16,'
        f'eval_data.synthetic_num_images={NUM_EVAL},'
        'train_data.global_batch_size=4,eval_data.global_batch_size=4,'
        'trainer.train_steps=4,trainer.steps_per_loop=2,'
        'trainer.checkpoint_interval=4,model.use_sync_bn=true,'
        # Keep every box: a 4-step model scores below the default 0.05.
        'model.score_threshold=0.0,trainer.num_summary_images=0')
TIMEOUT = 900  # ~250 s on a quiet 2-core machine


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def run_workers(model_dir, data_dir, num_workers=2):
  """Starts the workers; returns [(returncode, stdout, stderr)]. A worker
  that fails or a run past TIMEOUT kills them all (a lone worker would wait
  for its peers forever)."""
  workers = [f'localhost:{port}' for port in free_ports(num_workers)]
  processes = []
  for index in range(num_workers):
    tf_config = {'cluster': {'worker': workers},
                 'task': {'type': 'worker', 'index': index}}
    logs = [open(os.path.join(os.path.dirname(model_dir),
                              f'worker{index}.{name}'), 'w+')
            for name in ('out', 'err')]  # files: a full pipe would block
    processes.append((subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'scripts', 'train.py'),
         '--experiment=demo_retinanet_synthetic',
         '--strategy=multi_worker_mirrored', '--mode=train_and_eval',
         f'--model_dir={model_dir}',
         f'--data_dir={data_dir}', f'--params_override={TINY}'],
        stdout=logs[0], stderr=logs[1], text=True,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2',
             'TF_CONFIG': json.dumps(tf_config)}), logs))
  deadline = time.monotonic() + TIMEOUT
  try:
    while any(p.poll() is None for p, _ in processes):
      if (time.monotonic() > deadline or
          any(p.poll() not in (None, 0) for p, _ in processes)):
        break
      time.sleep(1)
  finally:
    for p, _ in processes:
      if p.poll() is None:
        p.kill()
  results = []
  for p, logs in processes:
    p.wait()
    outputs = []
    for log in logs:
      log.seek(0)
      outputs.append(log.read())
      log.close()
    results.append((p.returncode, *outputs))
  return results


def test_two_workers_train_to_the_same_weights(tmp_path):
  model_dir, data_dir = tmp_path / 'run', tmp_path / 'shapes'
  results = run_workers(str(model_dir), str(data_dir))
  failed = [(i, rc, err) for i, (rc, _, err) in enumerate(results) if rc]
  # The worker that failed, rather than the one killed after it.
  failed = [f for f in failed if f[1] != -signal.SIGKILL] or failed
  assert not failed, '\n'.join(f'worker {i}: rc {rc}\n{err[-3000:]}'
                                for i, rc, err in failed)
  assert 'step 4/4 (100%)' in results[0][1]  # the chief's progress line
  chief = tf.train.latest_checkpoint(str(model_dir))
  assert chief.endswith('ckpt-4')
  assert (model_dir / 'params.yaml').exists()
  # Before: the other worker's full checkpoints stayed there for ever.
  assert not (model_dir / '.worker_tmp').exists()

  # Evaluation: each worker ran its share, all of them were evaluated, and
  # worker 1's detections of its share (its weights) equal the chief's
  # checkpoint's (a single-device evaluation below, within 1e-9).
  for index, share in enumerate([[4], [3]]):
    found = re.findall(r'Evaluated (\d+) images; worker %d ran (\[.*?\])'
                       % index, results[index][2])
    assert found == [(str(NUM_EVAL), str(share))], results[index][2][-3000:]
  with open(model_dir / 'eval_metrics.json') as f:
    evaluation = json.load(f)
  assert evaluation['step'] == 4
  distributed = evaluation['metrics']
  # Every worker computed the same metrics from the gathered detections.
  lines = [[line for line in out.splitlines() if line.startswith('step 4 eval')]
           for _, out, _ in results]
  assert lines[0] == lines[1] and len(lines[0]) == 1, lines
  single = _single_device_metrics(model_dir, data_dir)
  assert set(single) == set(distributed) and len(single) == 12
  assert single['ARmax100'] > 0, single
  for name, value in single.items():
    assert abs(distributed[name] - value) <= 1e-9, (name, value,
                                                    distributed[name])


def _single_device_metrics(model_dir, data_dir):
  """The chief's step-4 checkpoint evaluated on one device (a plain dataset
  of global batches, no strategy)."""
  from spinenet_tf.checkpoints import model_checkpoint
  from spinenet_tf.training import config as config_lib
  from spinenet_tf.training.tasks import build_task

  config = config_lib.load_experiment(str(model_dir / 'params.yaml'))
  task = build_task(config, str(data_dir))
  model = task.build_model()
  model_checkpoint(model).read(
      tf.train.latest_checkpoint(str(model_dir))).expect_partial()
  return task.evaluate(model, task.eval_dataset())


def test_fewer_files_than_workers_shard_the_records(tmp_path):
  """One train file, 2 input pipelines: by file, one pipeline would read
  nothing and its worker stop at once; by record each reads its half."""
  synthetic_shapes.write_synthetic_dataset(str(tmp_path), num_train=10,
                                           num_val=1, image_size=64)
  pattern = synthetic_shapes.file_pattern(str(tmp_path), 'train')
  assert len(tf.io.gfile.glob(pattern)) == 1
  shares = []
  for index in range(2):
    context = tf.distribute.InputContext(2, index, 1)
    records = detection_input._tfrecord_records(pattern, True, None, context,
                                                 False, SkipCounter())
    shares.append([where.decode() for _, where in records.as_numpy_iterator()])
  assert len(shares[0]) == len(shares[1]) == 5
  assert len(set(shares[0]) | set(shares[1])) == 10
