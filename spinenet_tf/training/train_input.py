"""Training input whose position can be checkpointed (trainer.checkpoint_input).

    train_input = CheckpointableInput(strategy, task.train_dataset)
    checkpoint.iterator = train_input.iterator   # saved and restored with it
    images, labels = next(train_input)           # per-replica values

tf.distribute's own input (`distribute_datasets_from_function`) prefetches to
the replicas through a `MultiDeviceIterator`, which TensorFlow cannot save: a
`tf.train.Checkpoint` silently leaves it out, so a resumed run restarts the
input pipeline from its first batch. `CheckpointableInput` feeds the replicas
the same batches without it: one pipeline on the host, built from the same
`InputContext` as `distribute_datasets_from_function` gives a one-host
strategy, read by a plain (checkpointable) tf.data iterator; each step takes
`num_replicas_in_sync` consecutive per-replica batches, the i-th for replica
i, and hands them over with `experimental_distribute_values_from_function`.
The checkpoint then holds the iterator's state (its shuffle and prefetch
buffers included), and a restored run reads exactly the batches the
uninterrupted run would have read.

Supported on one host: OneDeviceStrategy and MirroredStrategy. The batches
stay on the host until the replica step uses them (no prefetch to the
devices). Stateful ops in the pipeline (the skip counter's `py_function`,
RandAugment's stateful random ops) are not part of the saved state; the
detection and classification pipelines draw their other randomness from
seeded, checkpointed tf.data state (`Dataset.random`, `shuffle`), so without
RandAugment the resumed input is exact.
"""

import tensorflow as tf

SUPPORTED = (tf.distribute.OneDeviceStrategy, tf.distribute.MirroredStrategy)
ITERATOR_KEY = 'iterator/.ATTRIBUTES/ITERATOR_STATE'


def supports_checkpointed_input(strategy):
  """Whether `CheckpointableInput` can feed `strategy`."""
  return isinstance(strategy, SUPPORTED)


class CheckpointableInput:
  """`next()` gives the args of one `strategy.run` call; `iterator` is the
  tf.data iterator to put in the checkpoint."""

  def __init__(self, strategy, dataset_fn):
    if not supports_checkpointed_input(strategy):
      raise ValueError(
          'trainer.checkpoint_input supports the one_device and mirrored '
          f'strategies, not {type(strategy).__name__}.')
    self.strategy = strategy
    self.num_replicas = strategy.num_replicas_in_sync
    context = tf.distribute.InputContext(
        num_input_pipelines=1, input_pipeline_id=0,
        num_replicas_in_sync=self.num_replicas)
    options = tf.data.Options()
    # Counters and logging in py_functions need not be restored.
    options.experimental_external_state_policy = (
        tf.data.experimental.ExternalStatePolicy.IGNORE)
    with tf.device('/cpu:0'):
      self.iterator = iter(dataset_fn(context).with_options(options))

  def __iter__(self):
    return self

  def __next__(self):
    if self.num_replicas == 1:
      return next(self.iterator)
    batches = [next(self.iterator) for _ in range(self.num_replicas)]
    return self.strategy.experimental_distribute_values_from_function(
        lambda context: batches[context.replica_id_in_sync_group])


def has_input_state(path):
  """Whether the checkpoint at `path` holds an input position."""
  return tf.train.load_checkpoint(path).has_tensor(ITERATOR_KEY)
