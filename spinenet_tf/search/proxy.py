"""The proxy task: one candidate trained and scored at search scale.

    proxy = Proxy(CPU_PROXY, data_dir='/tmp/search/data')
    config = proxy.config('/tmp/search/trials/trial_0003/candidate.yaml')
    size = proxy.measure(config)      # params, flops, latency_ms
    result = train_and_evaluate(config, proxy.data_dir, run_dir)

The proxy is an experiment config (spinenet_tf/configs/search_proxy*.yaml) whose
model.backbone is replaced by the candidate's block-spec file; its
backbone_kwargs hold the search scale (paper: filters x0.25, resample
alpha 0.25, 64-channel endpoints and head). The reward is AP on the
evaluation data, a split held out from training (the synthetic sets'
validation split; COCO: a slice of train, see search_proxy_paper_coco.yaml).
"""

import json
import statistics
import time

import tensorflow as tf

from spinenet_tf import checks, configs, flops, results
from spinenet_tf.models.factory import build_model_from_config
from spinenet_tf.training import config as config_lib
from spinenet_tf.training import strategy as strategy_lib
from spinenet_tf.training.tasks import build_task
from spinenet_tf.training.trainer import Trainer

CPU_PROXY = configs.path('search_proxy')
PAPER_PROXY = configs.path('search_proxy_paper_coco')
MAX_LEVEL = 7
# A trial small enough for a test: 128 px, 2 steps, 4 evaluation images.
QUICK_OVERRIDES = (
    'model.input_size=128,train_data.global_batch_size=2,'
    'train_data.synthetic_num_images=4,eval_data.global_batch_size=4,'
    'eval_data.synthetic_num_images=4,trainer.train_steps=2,'
    'trainer.steps_per_loop=1,trainer.checkpoint_interval=2,'
    'schedule.warmup_steps=1')


def latency_ms(model, image_shape, runs):
  """Median wall time in ms of `runs` batch-1 forward passes (traced and
  run once before)."""
  forward = tf.function(lambda x: model(x, training=False))
  images = tf.zeros([1, *image_shape])
  sync = lambda outputs: tf.nest.map_structure(lambda t: t.numpy(), outputs)
  sync(forward(images))
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    sync(forward(images))
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)


def measure(config, latency_runs=0):
  """{'params', 'flops', 'latency_ms'} of the model of `config` (one image
  at its input size; latency NaN when `latency_runs` is 0)."""
  model = build_model_from_config({'task': config.task, 'model': config.model})
  return {'params': int(model.count_params()),
          'flops': sum(flops.count_flops(model, model.image_shape).values()),
          'latency_ms': (latency_ms(model, model.image_shape, latency_runs)
                         if latency_runs else float('nan'))}


def train_and_evaluate(config, data_dir, run_dir, on_evaluate=None):
  """Trains `config` in `run_dir` (resuming from its checkpoint) and
  evaluates it; returns the final metrics with 'seconds'.
  `on_evaluate(step, metrics)`: as `Trainer.train`'s."""
  start = time.time()
  strategy = strategy_lib.build_strategy('one_device')
  with Trainer(config, build_task(config, data_dir), strategy,
               run_dir) as trainer:
    # A run resumed after its last step has nothing left to train.
    metrics = (trainer.train(evaluate=True, on_evaluate=on_evaluate)
               or trainer.evaluate())
  return {**metrics, 'seconds': time.time() - start}


class Proxy:
  """The proxy experiment of a search.

  Args:
    config_file: a detection experiment YAML (default CPU_PROXY).
    overrides: `load_experiment` overrides applied to every trial.
    data_dir: the synthetic dataset folder (written on first use) or the
      data_dir of TFDS / TFRecord sources.
    latency_runs: forward passes timed per candidate (0: not measured).
  """

  def __init__(self, config_file=CPU_PROXY, overrides=(), data_dir=None,
               latency_runs=5):
    self.config_file = config_file
    self.overrides = list(overrides)
    self.data_dir = data_dir
    self.latency_runs = checks.integer('latency_runs', latency_runs, 0)
    base = config_lib.load_experiment(config_file, self.overrides)
    if base.task != 'detection':
      raise ValueError(f'{config_file}: the search proxy must be a detection '
                       f'experiment, got task {base.task!r}.')
    self.input_size = base.model['input_size']
    if self.input_size % 2 ** MAX_LEVEL:
      raise ValueError(f'{config_file}: model.input_size {self.input_size} '
                       f'must be a multiple of {2 ** MAX_LEVEL} (candidates '
                       f'output level {MAX_LEVEL}).')
    self.train_steps = base.trainer.train_steps

  def config(self, backbone, sections=None):
    """The proxy experiment with model.backbone = `backbone` (a block-spec
    file or a model id), then each key of `sections` ({section: {key:
    value}}, a value replacing the proxy's whole, not merged into it),
    then the proxy's overrides."""
    sections = dict(sections or {})
    sections['model'] = {**sections.get('model', {}), 'backbone': backbone}
    keys = [f'{section}.{key}={json.dumps(value)}'
            for section, values in sections.items()
            for key, value in values.items()]
    return config_lib.load_experiment(self.config_file, keys + self.overrides)

  def settings(self):
    """What makes two proxies' results comparable: the proxy experiment
    (flattened, every candidate's backbone left out) and latency_runs;
    not data_dir, which each machine may keep elsewhere."""
    flat = results.flat_config(self.config('49'))
    flat.pop('model.backbone')
    return {**{f'proxy.{k}': v for k, v in flat.items()},
            'latency_runs': self.latency_runs}

  def measure(self, config):
    """`measure(config)` with this proxy's latency_runs."""
    return measure(config, self.latency_runs)
