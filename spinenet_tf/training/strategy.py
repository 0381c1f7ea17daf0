"""A tf.distribute strategy from the --strategy flags."""

import tensorflow as tf

STRATEGIES = ('one_device', 'mirrored', 'multi_worker_mirrored', 'tpu')


def use_logical_cpus(count):
  """Splits the CPU into `count` logical devices (before TF initialises):
  lets tests run MirroredStrategy on a CPU."""
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def build_strategy(name='one_device', tpu=None, num_gpus=0):
  """'one_device' (first GPU, else CPU), 'mirrored' (num_gpus GPUs, or all
  local devices when 0), 'multi_worker_mirrored' (TF_CONFIG) or 'tpu'
  (address or name in `tpu`; '' for a local TPU VM)."""
  if name not in STRATEGIES:
    raise ValueError(f'strategy must be one of {STRATEGIES}, got {name!r}.')
  if tpu is not None and name != 'tpu':
    raise ValueError(f'--tpu={tpu} needs --strategy=tpu (strategy is '
                     f'{name!r}); without it the run would use one device.')
  if num_gpus and name != 'mirrored':
    raise ValueError(f'--num_gpus={num_gpus} needs --strategy=mirrored '
                     f'(strategy is {name!r}); without it the run would use '
                     'one device.')
  if name == 'tpu':
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu or '')
    if tpu not in (None, '', 'local'):
      tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if name == 'multi_worker_mirrored':
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = [d.name for d in tf.config.list_logical_devices('GPU')]
  if name == 'mirrored':
    if num_gpus:
      if num_gpus > len(gpus):
        raise ValueError(f'--num_gpus={num_gpus} but {len(gpus)} GPUs found.')
      return tf.distribute.MirroredStrategy(gpus[:num_gpus])
    devices = gpus or [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else '/cpu:0')
