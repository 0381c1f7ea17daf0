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
  (the TPU of this TPU VM: `tpu` None, '' or 'local'). A remote TPU (a TPU
  Node, by name or grpc:// address) is refused: it runs the input pipeline
  on its own host, where the pipelines' skip counting (tf.py_function)
  cannot run."""
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
    if tpu not in (None, '', 'local'):
      raise ValueError(
          f'--tpu={tpu}: a remote TPU (TPU Node) runs the input pipeline on '
          'its own host, where the pipelines\' counting of skipped and '
          'damaged records (tf.py_function) cannot run. Run on a TPU VM, '
          'on the VM itself: --strategy=tpu (--tpu=local).')
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver('local')
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
