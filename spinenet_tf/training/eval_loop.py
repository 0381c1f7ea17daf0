"""Evaluation under a tf.distribute strategy: every replica of every worker
evaluates its share of the evaluation set; the results come back to the host.

    run = EvalRun(strategy, replica_fn, dataset_fn, global_batch_size)
    for outputs in run:          # numpy dicts, real images only
      ...
    run.num_images, run.replica_images

- Sharding: `dataset_fn(input_context)` gives the per-replica batches of
  this input pipeline's share of the records, as the training input does
  (`distribute_datasets_from_function`).
- Padding: each pipeline's batches are padded to the per-replica batch size
  and followed by all-padding batches forever; `valid` marks the real
  images. Every replica of every worker therefore runs the same number of
  steps on static shapes (a TPU needs them), and a worker whose share ends
  first does not leave the others waiting in a collective.
- Gathering: each step runs `replica_fn(images, labels)` -> {name: [b, ...]}
  in `strategy.run` inside a tf.function and `strategy.gather`s the outputs
  and `valid` along the batch axis: the local replicas' results, and under
  MultiWorkerMirroredStrategy every worker's (an all-gather, so every
  worker holds all results and computes the same metrics). Padded rows are
  dropped on the host. The loop ends at the first step in which no replica
  anywhere had a real image (read from the gathered `valid`, so all
  workers stop at the same step), or after `steps` steps.

A plain `tf.data.Dataset` (one pipeline) is also taken when the strategy has
one replica: its batches are evaluated as they come.
"""

import numpy as np
import tensorflow as tf
from absl import logging


def _pad_to(batch_size):
  def pad(*element):
    count = tf.shape(tf.nest.flatten(element)[0])[0]
    tf.debugging.assert_less_equal(
        count, batch_size, message='evaluation batch larger than the '
        'per-replica batch size')

    def pad_one(t):
      padded = tf.pad(t, [[0, batch_size - count]] +
                      [[0, 0]] * (t.shape.rank - 1))
      return tf.ensure_shape(padded, [batch_size, *t.shape[1:]])
    return (*tf.nest.map_structure(pad_one, element),
            tf.range(batch_size) < count)
  return pad


def padded_batches(dataset, batch_size):
  """(images, labels) batches of at most `batch_size` -> (images, labels,
  valid [batch_size] bool) of exactly `batch_size`, then all-padding
  batches (valid all False) forever."""
  padded = dataset.map(_pad_to(batch_size))
  spec = padded.element_spec
  for s in tf.nest.flatten(spec):
    if not s.shape.is_fully_defined():
      raise ValueError(f'evaluation batches need static shapes apart from '
                       f'the batch, got {spec}.')
  filler = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), spec)
  return padded.concatenate(tf.data.Dataset.from_tensors(filler).repeat())


def distributed_batches(strategy, dataset_fn, global_batch_size):
  """The padded per-replica evaluation batches of `dataset_fn`, distributed."""
  def fn(input_context):
    batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    return padded_batches(dataset_fn(input_context), batch_size)
  return strategy.distribute_datasets_from_function(fn)


def _worker_name(strategy):
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return 'this worker'
  return f'{resolver.task_type} {resolver.task_id}'


class EvalRun:
  """Iterates the host results of `replica_fn` over the evaluation set.

  Args:
    strategy: the tf.distribute strategy (the current one by default).
    replica_fn: (images, labels) -> {name: tensor [b, ...]}, run per replica.
    dataset: a function input_context -> per-replica batches (distributed
      under `strategy`, needs `global_batch_size`), or a tf.data.Dataset of
      batches (only with one replica).
    global_batch_size: images per step over all replicas.
    steps: stop after this many steps (0: the whole set).

  After the iteration: `num_images` (real images over all workers) and
  `replica_images` (real images per replica of this worker).
  """

  def __init__(self, strategy, replica_fn, dataset, global_batch_size=None,
               steps=0):
    self.strategy = strategy or tf.distribute.get_strategy()
    self.replica_fn = replica_fn
    self.dataset = dataset
    self.global_batch_size = global_batch_size
    self.steps = steps
    self.num_images = 0
    self.replica_images = []

  def __iter__(self):
    self.num_images = 0
    if isinstance(self.dataset, tf.data.Dataset):
      if self.strategy.num_replicas_in_sync > 1:
        raise ValueError(
            f'a tf.data.Dataset is one input pipeline; with '
            f'{self.strategy.num_replicas_in_sync} replicas pass a function '
            f'input_context -> per-replica batches.')
      yield from self._single(self.dataset)
    else:
      if not self.global_batch_size:
        raise ValueError('a distributed evaluation needs global_batch_size.')
      yield from self._distributed()
    logging.info('Evaluated %d images; %s ran %s on its replicas '
                 '(%d replicas in all).', self.num_images,
                 _worker_name(self.strategy), self.replica_images,
                 self.strategy.num_replicas_in_sync)

  def _single(self, dataset):
    step = tf.function(self.replica_fn)
    self.replica_images = [0]
    for number, (images, labels) in enumerate(dataset):
      if self.steps and number >= self.steps:
        break
      outputs = {k: v.numpy() for k, v in step(images, labels).items()}
      count = len(next(iter(outputs.values())))
      self.replica_images[0] += count
      self.num_images += count
      yield outputs

  def _distributed(self):
    strategy, replica_fn = self.strategy, self.replica_fn

    booleans = set()

    def replica_step(images, labels, valid):
      outputs = dict(replica_fn(images, labels))
      outputs['valid'] = valid
      # Collectives gather numbers only.
      for key, value in outputs.items():
        if value.dtype == tf.bool:
          booleans.add(key)
          outputs[key] = tf.cast(value, tf.int32)
      return outputs

    @tf.function
    def step(iterator):
      per_replica = strategy.run(replica_step, args=next(iterator))
      # One gather per tensor: strategy.gather of a dict (TF 2.20) returns
      # only the first replica's values.
      gathered = {k: strategy.gather(v, axis=0)
                  for k, v in per_replica.items()}
      return gathered, per_replica['valid']

    iterator = iter(distributed_batches(strategy, self.dataset,
                                        self.global_batch_size))
    self.replica_images = None
    number = 0
    while not self.steps or number < self.steps:
      gathered, local_valid = step(iterator)
      number += 1
      counts = [int(np.sum(v)) for v in
                strategy.experimental_local_results(local_valid)]
      self.replica_images = ([a + b for a, b in
                              zip(self.replica_images, counts)]
                             if self.replica_images else counts)
      gathered = {k: v.numpy().astype(bool) if k in booleans else v.numpy()
                  for k, v in gathered.items()}
      valid = gathered.pop('valid')
      if not valid.any():
        break
      self.num_images += int(valid.sum())
      yield {k: v[valid] for k, v in gathered.items()}
