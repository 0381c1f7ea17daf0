"""The custom training loop on tf.distribute.

    strategy = build_strategy('mirrored')
    trainer = Trainer(config, build_task(config, data_dir), strategy, model_dir)
    trainer.train()            # resumes from model_dir's latest checkpoint
    trainer.evaluate()         # COCO metrics or top-1 / top-5

One host call runs `steps_per_loop` steps: `strategy.run(replica_step)`
inside a tf.function loop. Each replica reads its share of the global batch
(`distribute_datasets_from_function`), divides its loss by the number of
replicas, all-reduces the gradients and clips them by global norm before the
optimizer applies them. BatchNorm is synchronised across replicas with
`use_sync_bn` in the model config. A non-finite loss stops the run before
anything is saved, so the last checkpoint stays good.

With trainer.checkpoint_input (default: on when trainer.deterministic) the
replicas read `train_input.CheckpointableInput` instead, and every
checkpoint holds the input position: a run killed and restarted ends with
the weights of an uninterrupted one (tests/test_training_fault.py).

Resuming: `restore` reads the newest checkpoint the `checkpoint` state file
lists. One that cannot be read (truncated or corrupt files) is skipped with
a warning naming it, and the next older one is restored; when none can be
read, a ValueError names the folder and the bad checkpoints. Nothing in the
model folder is rewritten before the run is known to start: `train`'s
`on_start` callback (main.py writes params.yaml there) runs after the
restore and the first steps, before the first checkpoint of the run.

Training data that gives no batch at all (every record skipped, or nothing
matched) stops `train` with a NoValidRecordsError (a ValueError) naming
train_data's file pattern and the pipeline's counts (data/skipping.py). Result files (eval_metrics.json, best/best.json) are written
atomically (io_utils.atomic_write); summary writers are flushed when
`train` ends, however it ends, and closed by `close()` (or `with Trainer(...)
as trainer:`).
"""

import json
import os
import time

import keras
from absl import logging
import tensorflow as tf

from spinenet_tf import compat
from spinenet_tf.checkpoints import load_initial_weights, model_checkpoint
from spinenet_tf.data import skipping
from spinenet_tf.io_utils import atomic_write
from spinenet_tf.training.progress import Progress
from spinenet_tf.training import train_input as train_input_lib
from spinenet_tf.training.optimization import (build_optimizer,
                                               build_schedule, l2_penalty)

EVAL_METRICS_FILE = 'eval_metrics.json'
# float64 is a reference precision (CPU/GPU, slow): with it a step is exact
# enough to compare strategies (tests/test_training_distributed.py).
POLICIES = {'float32': 'float32', 'bfloat16': 'mixed_bfloat16',
            'float16': 'mixed_float16', 'float64': 'float64'}


def _is_chief(strategy):
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  jobs = resolver.cluster_spec().jobs
  if 'chief' in jobs:
    return resolver.task_type == 'chief'
  return resolver.task_type in (None, 'worker') and not resolver.task_id


# What a checkpoint that cannot be read raises: truncated files give an
# IndexError ('Read less bytes than requested'), a torn index or a missing
# shard a tf.errors.OpError (DataLossError, NotFoundError, ...).
CORRUPT_CHECKPOINT_ERRORS = (IndexError, tf.errors.OpError)


class NonFiniteLossError(FloatingPointError):
  """Training stopped on a NaN or Inf loss."""


class Trainer:
  """Trains and evaluates `task` under `strategy`, checkpointing to
  `model_dir` (local or gs://)."""

  def __init__(self, config, task, strategy, model_dir):
    self.config, self.task, self.strategy = config, task, strategy
    self.model_dir = model_dir
    self.is_chief = _is_chief(strategy)
    tc = config.trainer
    # Seeds, op determinism and the dtype policy hold for the process while
    # this trainer lives; close() puts back what was there before.
    self._process_state = compat.process_state()
    try:
      self._set_up(tc)
    except BaseException:
      compat.restore_process_state(self._process_state)
      raise
    self._writers = {}
    self.last_good_checkpoint = None  # set by restore and each save

  def _set_up(self, tc):
    config, strategy, model_dir = self.config, self.strategy, self.model_dir
    if tc.seed is not None:
      keras.utils.set_random_seed(tc.seed)
    if tc.deterministic:
      tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(POLICIES[tc.mixed_precision])
    with strategy.scope():
      self.model = self.task.build_model()
      self.optimizer = build_optimizer(
          config.optimizer, build_schedule(config.schedule, tc.train_steps),
          tc.mixed_precision)
      self.optimizer.build(self.model.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False,
                              name='global_step')
    # The loop all-reduces the gradients first, to clip by the global norm
    # of their sum; the optimizer must not sum them a second time.
    compat.stop_optimizer_gradient_sum(self.optimizer)
    # XLA and TPUs need static shapes; elsewhere a step may drop padding.
    self._static_shapes = tc.jit_compile or isinstance(
        strategy, (tf.distribute.TPUStrategy,
                   tf.distribute.experimental.TPUStrategy))
    self.checkpoint = model_checkpoint(
        self.model, optimizer=self.optimizer, step=self.step)
    write_dir = model_dir if self.is_chief else os.path.join(
        model_dir, '.worker_tmp', str(strategy.cluster_resolver.task_id))
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, write_dir, max_to_keep=tc.max_to_keep,
        step_counter=self.step)

  def close(self):
    """Flushes and closes the summary writers and puts back the seeds,
    op determinism and dtype policy of before (safe to call again)."""
    writers, self._writers = self._writers, {}
    for writer in writers.values():
      writer.flush()
      writer.close()
    state, self._process_state = self._process_state, None
    if state is not None:
      compat.restore_process_state(state)

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()

  def _flush(self):
    for writer in self._writers.values():
      writer.flush()

  # Summaries.

  def _writer(self, name):
    if name not in self._writers:
      self._writers[name] = (
          tf.summary.create_file_writer(os.path.join(self.model_dir, name))
          if self.is_chief else tf.summary.create_noop_writer())
    return self._writers[name]

  def _write_scalars(self, name, values, step):
    with self._writer(name).as_default(step=step):
      for key, value in values.items():
        tf.summary.scalar(key, value)

  # Training.

  def _replica_step(self, images, labels):
    model, optimizer = self.model, self.optimizer
    num_replicas = self.strategy.num_replicas_in_sync
    variables = model.trainable_variables
    if not self._static_shapes:
      labels = self.task.drop_padding(labels)
    with tf.GradientTape() as tape:
      outputs = tf.nest.map_structure(
          lambda t: tf.cast(t, tf.float32),
          model(self.task.training_inputs(model, images, labels),
                training=True))
      losses = dict(self.task.losses(model, outputs, labels))
      losses['l2_loss'] = l2_penalty(
          variables, self.config.optimizer.l2_weight_decay)
      losses['loss'] = losses['total_loss'] + losses['l2_loss']
      scaled = optimizer.scale_loss(losses['loss'] / num_replicas)
    grads = tape.gradient(scaled, variables)
    # Variables outside the loss's graph (unused endpoints) get no update.
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    grads, variables = [g for g, _ in pairs], [v for _, v in pairs]
    if num_replicas > 1:
      grads = tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, grads)
    clipnorm = self.config.optimizer.global_clipnorm
    if clipnorm:
      scale = getattr(optimizer, 'dynamic_scale', 1.0)
      grads, _ = tf.clip_by_global_norm(
          grads, clipnorm * tf.cast(tf.convert_to_tensor(scale),
                                    grads[0].dtype))
    optimizer.apply(grads, variables)
    return tf.stack([tf.cast(losses[k], tf.float32)
                     for k in self.loss_names]) / num_replicas

  @property
  def loss_names(self):
    return (*self.task.loss_names, 'l2_loss', 'loss')

  def train_loop_fn(self):
    """The loop that `train` runs, as tf.function(iterator, num_steps) ->
    (mean losses, all finite); each call trains `num_steps` steps of
    `iterator` (a distributed iterator of the task's batches). Public for
    benchmarks and callers that drive steps themselves."""
    replica_step = self._replica_step
    if self.config.trainer.jit_compile:
      replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def train_loop(iterator, num_steps):
      totals = tf.zeros([len(self.loss_names)])
      finite = tf.constant(True)
      for _ in tf.range(num_steps):
        per_replica = self.strategy.run(replica_step, args=next(iterator))
        losses = self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                      per_replica, axis=None)
        finite = tf.logical_and(finite,
                                tf.reduce_all(tf.math.is_finite(losses)))
        totals += losses
        self.step.assign_add(1)
      return totals / tf.cast(num_steps, tf.float32), finite

    return train_loop

  def _checkpoint_input(self):
    """trainer.checkpoint_input, by default on when deterministic (where
    the strategy allows)."""
    tc = self.config.trainer
    if tc.checkpoint_input is not None:
      return tc.checkpoint_input
    if (tc.deterministic and
        not train_input_lib.supports_checkpointed_input(self.strategy)):
      logging.warning('trainer.deterministic: the input position is not '
                      'checkpointed under %s; a resumed run restarts the '
                      'input.', type(self.strategy).__name__)
      return False
    return tc.deterministic

  def restore(self, iterator=None):
    """Restores the latest checkpoint in model_dir, or on a fresh run loads
    trainer.init_checkpoint; returns the step.
    `iterator` (a tf.data iterator, with checkpoint_input) joins the
    checkpoint: its position is restored, and saved from now on."""
    if iterator is not None:
      self.checkpoint.iterator = iterator
    latest = self._restore_newest_intact()
    self.last_good_checkpoint = latest
    if latest:
      logging.info('Restored %s at step %d.', latest, int(self.step.numpy()))
      if iterator is not None and not train_input_lib.has_input_state(latest):
        logging.warning('%s holds no input position: the input restarts '
                        'from its first batch.', latest)
    elif self.config.trainer.init_checkpoint:
      tc = self.config.trainer
      restored = load_initial_weights(
          self.model, tc.init_checkpoint, tc.init_checkpoint_modules,
          rebuild=lambda n: self.task.build_model(num_classes=n))
      logging.info('Initial weights (%s): %s.', tc.init_checkpoint_modules,
                   restored)
    return int(self.step.numpy())

  def _checkpoint_paths(self):
    """The checkpoints the state file in model_dir lists, newest first."""
    try:
      state = tf.train.get_checkpoint_state(self.model_dir)
    except Exception as e:  # pylint: disable=broad-except
      # A torn text proto raises protobuf's ParseError.
      raise ValueError(
          f'the checkpoint state file {os.path.join(self.model_dir, "checkpoint")}'
          f' cannot be read ({type(e).__name__}: {e}).') from e
    if state is None or not state.model_checkpoint_path:
      return []
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path not in paths:
      paths.append(state.model_checkpoint_path)
    return paths[::-1]

  def _restore_newest_intact(self):
    """Reads the newest readable checkpoint into self.checkpoint (its
    save_counter goes on too); returns its path, or None when there is
    none. Unreadable ones are skipped with a warning."""
    bad = []
    for path in self._checkpoint_paths():
      try:
        self.checkpoint.read(path).expect_partial()
      except CORRUPT_CHECKPOINT_ERRORS as e:
        reason = f'{type(e).__name__}: {_first_line(e)}'
        bad.append(f'{path} ({reason})')
        message = (f'checkpoint {path} cannot be read ({reason}); trying '
                   'the next older one.')
        logging.warning(message)
        continue
      if bad:
        logging.warning('Resuming from %s: newer checkpoint(s) %s could not '
                        'be read.', path, ', '.join(b.split(' (')[0]
                                                     for b in bad))
      return path
    if bad:
      raise ValueError(
          f'no intact checkpoint in {self.model_dir}: ' + '; '.join(bad) +
          '. Move them away to start afresh.')
    return None

  def train(self, evaluate=False, on_start=None, on_evaluate=None):
    """Trains to trainer.train_steps from the latest checkpoint; evaluates
    every eval_interval steps and at the end when `evaluate`.
    `on_start()` runs once the restore and the first steps succeeded,
    before the first checkpoint is saved; `on_evaluate(step, metrics)`
    after each evaluation (an exception it raises stops training, the
    checkpoint of that step saved). The summary writers are flushed on
    every exit."""
    try:
      return self._train(evaluate, on_start, on_evaluate)
    finally:
      self._flush()

  def _no_training_data(self, error):
    """The error for a training input that ended (it repeats: it gave no
    batch at all), naming the data and, from the pipeline's SkipCounter,
    the counts."""
    del error
    counter = self.task.train_skips
    if counter.source is not None:  # the task's pipeline described itself
      return skipping.NoValidRecordsError(
          f'train_data: {counter.no_valid_records_error()}')
    data = self.config.train_data
    where = (f'file_pattern {data.file_pattern!r}' if data.file_pattern
             else f'split {data.split!r}' if data.split else 'its data')
    return skipping.NoValidRecordsError(
        f'train_data (source {data.source!r}, {where}) gave no training '
        'batch: every record was skipped or none was found.')

  def _train(self, evaluate, on_start, on_evaluate):
    tc = self.config.trainer
    if self._checkpoint_input():
      iterator = train_input_lib.CheckpointableInput(
          self.strategy, self.task.train_dataset)
      step = self.restore(iterator.iterator)
    else:
      iterator = iter(self.strategy.distribute_datasets_from_function(
          self.task.train_dataset))
      step = self.restore()
    train_loop = self.train_loop_fn()
    global_batch = self.config.train_data.global_batch_size
    progress = Progress(tc.train_steps, step, tc.log_interval_seconds,
                        enabled=self.is_chief)
    metrics = {}
    while step < tc.train_steps:
      num_steps = min(tc.steps_per_loop, tc.train_steps - step,
                      tc.checkpoint_interval - step % tc.checkpoint_interval)
      if evaluate and tc.eval_interval:
        num_steps = min(num_steps,
                        tc.eval_interval - step % tc.eval_interval)
      start = time.perf_counter()
      try:
        means, finite = train_loop(iterator, tf.constant(num_steps))
      except tf.errors.OutOfRangeError as e:
        # The training datasets repeat: the end means no batch at all.
        raise self._no_training_data(e) from e
      means = dict(zip(self.loss_names, means.numpy().tolist()))
      if not bool(finite):
        raise NonFiniteLossError(
            f'Non-finite loss in steps {step + 1}..{step + num_steps} '
            f'(mean losses {means}); stopped without saving. The last good '
            f'checkpoint is {self.last_good_checkpoint}.')
      if on_start is not None:
        on_start()
        on_start = None
      seconds = time.perf_counter() - start
      step = int(self.step.numpy())
      values = {**means, 'images/s': num_steps * global_batch / seconds,
                'learning_rate': float(self._learning_rate())}
      self._write_scalars('train', values, step)
      progress.update(step, values)
      if step % tc.checkpoint_interval == 0 or step == tc.train_steps:
        self.last_good_checkpoint = self._save(step)
      if evaluate and ((tc.eval_interval and step % tc.eval_interval == 0)
                       or step == tc.train_steps):
        metrics = self.evaluate()
        if on_evaluate is not None:
          on_evaluate(step, metrics)
    return metrics

  def _save(self, step):
    """Saves a checkpoint; returns the chief's path. Every worker saves (a
    collective), but a non-chief's copy under .worker_tmp/ is removed at
    once: the chief's in model_dir is the run's."""
    path = self.manager.save(checkpoint_number=step)
    if self.is_chief:
      return path
    tf.io.gfile.rmtree(self.manager.directory)
    try:  # .worker_tmp, once no other worker's copy is in it
      os.rmdir(os.path.dirname(self.manager.directory))
    except OSError:  # not empty, or not a local folder (gs://)
      pass
    return os.path.join(self.model_dir, os.path.basename(path))

  def _learning_rate(self):
    lr = self.optimizer.learning_rate
    return lr(self.optimizer.iterations) if callable(lr) else lr

  # Evaluation.

  def evaluate(self):
    """Evaluates the current weights (their moving average with use_ema),
    writes eval summaries and keeps the best checkpoint."""
    tc = self.config.trainer
    step = int(self.step.numpy())
    variables = self.model.trainable_variables
    backup = None
    if self.config.optimizer.use_ema:
      backup = [tf.identity(v) for v in variables]
      self.optimizer.finalize_variable_values(variables)
    try:
      # Under the strategy: each replica and worker evaluates its share
      # of task.eval_dataset (training/eval_loop.py).
      with self.strategy.scope():
        metrics = self.task.evaluate(self.model, self.task.eval_dataset,
                                     tc.eval_steps)
      metrics = {k: float(v) for k, v in metrics.items()}
      logging.info('Step %d eval: %s', step, metrics)
      print(f'step {step} eval: ' + ', '.join(
          f'{k} {v:.4f}' for k, v in metrics.items()), flush=True)
      self._write_scalars('eval', metrics, step)
      self._write_summary_images(step)
      self._write_metrics_json(metrics, step)
      self._keep_best(metrics, step)
    finally:
      if backup is not None:
        for v, value in zip(variables, backup):
          v.assign(value)
    return metrics

  def _write_summary_images(self, step):
    """trainer.num_summary_images eval images with predictions (detection)."""
    count = self.config.trainer.num_summary_images
    if not (self.is_chief and count and
            hasattr(self.task, 'summary_images')):
      return
    images = self.task.summary_images(self.model, count)
    with self._writer('eval').as_default(step=step):
      tf.summary.image('predictions', images, max_outputs=count)

  def _write_metrics_json(self, metrics, step):
    """The latest eval metrics, for scripts: <model_dir>/eval_metrics.json."""
    if self.is_chief:
      tf.io.gfile.makedirs(self.model_dir)
      atomic_write(os.path.join(self.model_dir, EVAL_METRICS_FILE),
                   json.dumps({'step': step, 'metrics': metrics}, indent=2))

  def _keep_best(self, metrics, step):
    tc = self.config.trainer
    if not tc.best_metric or not self.is_chief:
      return
    if tc.best_metric not in metrics:
      raise ValueError(f'trainer.best_metric {tc.best_metric!r} is not an '
                       f'eval metric; metrics: {sorted(metrics)}.')
    best_dir = os.path.join(self.model_dir, 'best')
    info_path = os.path.join(best_dir, 'best.json')
    value = metrics[tc.best_metric]
    if tf.io.gfile.exists(info_path):
      with tf.io.gfile.GFile(info_path) as f:
        best = json.load(f)['value']
      better = value > best if tc.best_metric_mode == 'max' else value < best
      if not better:
        return
    # The old best stays until best.json names the new one: a run killed
    # in between leaves a best.json whose checkpoint exists.
    manager = tf.train.CheckpointManager(
        model_checkpoint(self.model, step=self.step), best_dir,
        max_to_keep=None)
    path = manager.save(checkpoint_number=step)
    atomic_write(info_path, json.dumps({
        'metric': tc.best_metric, 'value': value, 'step': step,
        'checkpoint': os.path.basename(path), 'metrics': metrics}))
    for name in tf.io.gfile.glob(os.path.join(best_dir, 'ckpt-*')):
      if not os.path.basename(name).startswith(
          os.path.basename(path) + '.'):
        tf.io.gfile.remove(name)
    tf.compat.v1.train.update_checkpoint_state(
        best_dir, path, all_model_checkpoint_paths=[path])

  def continuous_evaluate(self, timeout=None):
    """Evaluates each new checkpoint in model_dir until the last step."""
    metrics = {}
    for path in tf.train.checkpoints_iterator(self.model_dir,
                                              timeout=timeout):
      try:
        model_checkpoint(self.model, optimizer=self.optimizer,
                         step=self.step).read(path).expect_partial()
      except CORRUPT_CHECKPOINT_ERRORS as e:
        logging.warning('Skipped checkpoint %s: it cannot be read (%s: %s).',
                        path, type(e).__name__, _first_line(e))
        continue
      metrics = self.evaluate()
      if int(self.step.numpy()) >= self.config.trainer.train_steps:
        break
    return metrics


def _first_line(error):
  text = getattr(error, 'message', None) or str(error) or type(error).__name__
  return text.strip().splitlines()[0] if text.strip() else type(error).__name__
