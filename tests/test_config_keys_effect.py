"""Every experiment config key takes effect where it applies.

`KEYS` must name every dotted key of `ExperimentConfig` (a new key without
an entry fails `test_every_config_key_is_listed`). Each entry says how its
effect is shown:
- 'optimizer' / 'schedule': the optimizer or learning-rate curve built
  from the config changes;
- 'data': the argument the task hands to its dataset builder changes;
- 'model': the `model` section is handed to the builders, whose every
  keyword is walked in tests/test_options_effect.py (checked here: every
  accepted model key is a builder keyword);
- 'trainer': one short training run with every trainer key changed
  (`trainer_run`), each asserted on what it controls;
- 'own_data': records converted from COCO JSON, in tests/test_own_data.py
  (label_map: num_classes, refused class ids, names; annotation_file: AP
  against the JSON).
Where a key has no effect (e.g. momentum with Adam) it is refused: see
tests/test_bad_inputs_models.py::test_config_values.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from spinenet_tf.models import backbone as backbone_lib
from spinenet_tf.models import factory
from spinenet_tf.training import config as config_lib
from spinenet_tf.training import optimization, tasks
from spinenet_tf.training import strategy as strategy_lib
from spinenet_tf.training import trainer as trainer_lib
from spinenet_tf.training.trainer import Trainer

from tests import test_maskrcnn_options_effect as maskrcnn_walk
from tests import test_options_effect as builder_walk

# key -> (probe, non-default value, other keys the value needs).
KEYS = {
    'task': ('model', 'classification', {}),
    'model': ('model', None, {}),
    'optimizer.type': ('optimizer', 'sgd', {}),
    'optimizer.momentum': ('optimizer', 0.5, {'optimizer.type': 'sgd'}),
    'optimizer.nesterov': ('optimizer', True, {'optimizer.type': 'sgd'}),
    'optimizer.weight_decay': ('optimizer', 0.1, {}),
    'optimizer.l2_weight_decay': ('trainer', 1e-2, {}),
    'optimizer.global_clipnorm': ('trainer', 1e-9, {}),
    # The default ema_momentum 0.9999 needs a long run (config._check_ema).
    'optimizer.use_ema': ('optimizer', True, {'trainer.train_steps': 100000}),
    'optimizer.ema_momentum': ('optimizer', 0.5, {
        'optimizer.use_ema': True, 'trainer.train_steps': 100000}),
    'schedule.type': ('schedule', 'constant', {}),
    'schedule.learning_rate': ('schedule', 0.1, {}),
    'schedule.warmup_steps': ('schedule', 50, {}),
    'schedule.warmup_learning_rate': ('schedule', 0.001, {}),
    'schedule.boundaries': ('schedule', [20], {
        'schedule.type': 'step', 'schedule.boundaries': [50],
        'schedule.multipliers': [0.1]}),
    'schedule.multipliers': ('schedule', [0.5], {
        'schedule.type': 'step', 'schedule.boundaries': [50],
        'schedule.multipliers': [0.1]}),
    'schedule.decay_steps': ('schedule', 40, {}),
    'schedule.alpha': ('schedule', 0.5, {}),
}
for _section in ('train_data', 'eval_data'):
  KEYS.update({
      f'{_section}.source': ('data', 'tfds', {}),
      f'{_section}.file_pattern': ('data', '/data/y-*', {
          f'{_section}.source': 'tfrecord', f'{_section}.data_dir': None,
          f'{_section}.file_pattern': '/data/x-*'}),
      f'{_section}.data_dir': ('data', '/data/elsewhere', {}),
      f'{_section}.split': ('data', 'other', {}),
      f'{_section}.global_batch_size': ('data', 2, {}),
      f'{_section}.max_num_instances': ('data', 7, {}),
      f'{_section}.synthetic_num_images': ('data', 12, {}),
      f'{_section}.randaugment': ('classification_data', [2, 5], {}),
      f'{_section}.label_smoothing': ('classification_data', 0.1, {}),
  })
KEYS.update({
    'train_data.scale_range': ('data', [0.8, 1.25], {}),
    'train_data.shuffle_buffer': ('data', 3, {}),
    'train_data.seed': ('data', 5, {}),
    'eval_data.seed': ('refused', 5, {}),
    'eval_data.scale_range': ('refused', [0.8, 1.25], {}),
    'eval_data.shuffle_buffer': ('refused', 3, {}),
    'eval_data.randaugment': ('refused', [2, 5], {}),
    'eval_data.label_smoothing': ('refused', 0.1, {}),
    'train_data.annotation_file': ('refused', 'instances.json', {}),
    # Shown on converted records in tests/test_own_data.py.
    'label_map': ('own_data', None, {}),
    'eval_data.annotation_file': ('own_data', None, {}),
})
TRAINER_KEYS = (
    'train_steps', 'steps_per_loop', 'checkpoint_interval', 'max_to_keep',
    'eval_interval', 'eval_steps', 'best_metric', 'best_metric_mode',
    'mixed_precision', 'jit_compile', 'checkpoint_input', 'seed',
    'deterministic', 'num_summary_images', 'log_interval_seconds',
    'init_checkpoint', 'init_checkpoint_modules')
KEYS.update({f'trainer.{k}': ('trainer', None, {}) for k in TRAINER_KEYS})

DETECTION = {
    'task': 'detection',
    'model': {'backbone': 'mobile-49XS', 'input_size': 128, 'num_classes': 4},
    'optimizer': {'type': 'adam'},
    'schedule': {'type': 'cosine', 'learning_rate': 0.01},
    'train_data': {'data_dir': '/data/shapes'},
    'eval_data': {'data_dir': '/data/shapes'},
    'trainer': {'train_steps': 100},
}
CLASSIFICATION = {
    'task': 'classification',
    'model': {'backbone': 'mobile-49XS', 'input_size': 128, 'num_classes': 3},
    'train_data': {'source': 'i_naturalist2017'},
    'eval_data': {'source': 'i_naturalist2017'},
}


def _all_keys(cls=config_lib.ExperimentConfig, prefix=''):
  for field in dataclasses.fields(cls):
    if dataclasses.is_dataclass(field.type):
      yield from _all_keys(field.type, f'{prefix}{field.name}.')
    else:
      yield prefix + field.name


def test_every_config_key_is_listed():
  assert set(_all_keys()) == set(KEYS)


def _config(base, changes):
  data = json.loads(json.dumps(base))
  for dotted, value in changes.items():
    node = data
    *sections, key = dotted.split('.')
    for section in sections:
      node = node.setdefault(section, {})
    node[key] = value
  return config_lib.config_from_dict(data)


def _probe_pair(key, base=DETECTION):
  _, value, needs = KEYS[key]
  return _config(base, needs), _config(base, {**needs, key: value})


def _optimizer_state(config):
  optimizer = optimization.build_optimizer(config.optimizer, 0.01)
  return (type(optimizer).__name__, optimizer.weight_decay, optimizer.use_ema,
          optimizer.ema_momentum, getattr(optimizer, 'momentum', None),
          getattr(optimizer, 'nesterov', None))


@pytest.mark.parametrize('key', sorted(k for k, v in KEYS.items()
                                       if v[0] == 'optimizer'))
def test_optimizer_key_takes_effect(key):
  default, changed = _probe_pair(key)
  assert _optimizer_state(changed) != _optimizer_state(default)


def _learning_rates(config):
  schedule = optimization.build_schedule(config.schedule,
                                         config.trainer.train_steps)
  return [round(float(schedule(step) if callable(schedule) else schedule), 7)
          for step in (0, 10, 30, 60, 90)]


@pytest.mark.parametrize('key', sorted(k for k, v in KEYS.items()
                                       if v[0] == 'schedule'))
def test_schedule_key_takes_effect(key):
  base = DETECTION
  if key == 'schedule.warmup_learning_rate':
    base = _merged(DETECTION, {'schedule': {'warmup_steps': 50}})
  default, changed = _probe_pair(key, base)
  assert _learning_rates(changed) != _learning_rates(default)


def _merged(base, update):
  data = json.loads(json.dumps(base))
  for section, values in update.items():
    data.setdefault(section, {}).update(values)
  return data


def _dataset_arguments(config, monkeypatch):
  """What the task passes to its dataset builders (and to the synthetic
  dataset writer) for the training and the evaluation data."""
  calls = []

  def record(*args, **kwargs):
    calls.append((args, kwargs))
    return tf.data.Dataset.range(1)

  monkeypatch.setattr(tasks, 'build_detection_dataset', record)
  monkeypatch.setattr(tasks, 'build_classification_dataset', record)
  monkeypatch.setattr(tasks.synthetic_shapes, 'write_synthetic_dataset',
                      record)
  monkeypatch.setattr(tasks, 'atomic_write',  # its written_for.json
                      lambda path, text: calls.append((path, text)))
  monkeypatch.setattr(tf.io.gfile, 'exists', lambda path: False)
  task = tasks.build_task(config)
  task.train_dataset()
  task.eval_dataset()
  return repr(calls)


@pytest.mark.parametrize('key', sorted(k for k, v in KEYS.items()
                                       if v[0] in ('data',
                                                   'classification_data')))
def test_data_key_takes_effect(key, monkeypatch):
  base = CLASSIFICATION if KEYS[key][0] == 'classification_data' else DETECTION
  default, changed = _probe_pair(key, base)
  assert (_dataset_arguments(changed, monkeypatch) !=
          _dataset_arguments(default, monkeypatch))


@pytest.mark.parametrize('key', sorted(k for k, v in KEYS.items()
                                       if v[0] == 'refused'))
def test_key_without_effect_is_refused(key):
  with pytest.raises(ValueError, match=f'config key {key} = .* has no '
                                       'effect here'):
    _probe_pair(key)


def test_model_keys_are_builder_keywords():
  """Every key the `model` section accepts is a builder keyword walked by
  tests/test_options_effect.py or tests/test_maskrcnn_options_effect.py
  (or the three it is built from)."""
  walked = (set(builder_walk.RETINANET_MODEL_VALUES) |
            set(builder_walk.RETINANET_OUTPUT_VALUES) |
            set(maskrcnn_walk.MODEL_VALUES) | set(maskrcnn_walk.OUTPUT_VALUES) |
            set(builder_walk.CLASSIFIER_VALUES) |
            set(builder_walk.BACKBONE_VALUES) |
            {'resample_alpha', 'decoder_kwargs'})
  # model.type (which detector) is shown in tests/test_detector_registry.py.
  sections = [('classification', {})] + [
      ('detection', {'type': name}) for name in factory.DETECTORS]
  for task, model in sections:
    accepted = set(config_lib.model_keys(task, model))
    assert accepted - {'backbone', 'input_size', 'num_classes',
                       'type'} <= walked
  assert set(backbone_lib.BACKBONE_OPTIONS) <= walked


# The training run: every trainer key changed from its default.
SIZE, BATCH = 128, 2
TRAINER = {
    'train_steps': 6, 'steps_per_loop': 2, 'checkpoint_interval': 4,
    'max_to_keep': 1, 'eval_interval': 2, 'eval_steps': 1,
    'best_metric': 'AP', 'best_metric_mode': 'min',
    'mixed_precision': 'bfloat16', 'checkpoint_input': True, 'seed': 3,
    'deterministic': True, 'num_summary_images': 2,
    'log_interval_seconds': 0.0,
}
EVAL_AP = [0.5, 0.2, 0.9]  # what the fake evaluation reports at steps 2, 4, 6


class FakeDetection(tasks.DetectionTask):
  """Random images with two boxes; evaluation records its calls."""

  def __init__(self, config):
    super().__init__(config)
    self.eval_calls = []
    self.summary_counts = []

  def train_dataset(self, input_context=None):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype('float32')
    boxes = np.tile(np.array([[[10, 10, 60, 60], [40, 50, 120, 110]]],
                             'float32'), (BATCH, 1, 1))
    classes = np.tile(np.array([[1, 2]], 'int32'), (BATCH, 1))
    return tf.data.Dataset.from_tensors(
        (images, {'boxes': boxes, 'classes': classes})).repeat()

  def evaluate(self, model, dataset=None, steps=0):
    self.eval_calls.append(steps)
    return {'AP': EVAL_AP[len(self.eval_calls) - 1]}

  def summary_images(self, model, num_images):
    self.summary_counts.append(num_images)
    return np.zeros((num_images, 8, 8, 3), np.uint8)


def _run_config(**trainer):
  model = dict(DETECTION['model'], num_convs=1, num_filters=8,
               backbone_kwargs={'filter_size_scale': 0.5})
  return config_lib.config_from_dict(_merged(DETECTION, {
      'model': model,
      'optimizer': {'type': 'sgd', 'momentum': 0.0,
                    'l2_weight_decay': KEYS['optimizer.l2_weight_decay'][1],
                    'global_clipnorm': KEYS['optimizer.global_clipnorm'][1]},
      'schedule': {'type': 'constant', 'learning_rate': 1.0},
      'train_data': {'global_batch_size': BATCH},
      'trainer': trainer}))


def _scalars(directory, tag):
  values = []
  for path in tf.io.gfile.glob(os.path.join(directory, 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values.append((event.step, float(tf.make_ndarray(value.tensor))))
  return sorted(values)


@pytest.fixture(scope='module')
def trainer_run(tmp_path_factory):
  """Trains with TRAINER; returns what the run left and recorded."""
  model_dir = str(tmp_path_factory.mktemp('run'))
  task = FakeDetection(_run_config(**TRAINER))
  try:
    with Trainer(task.config, task, strategy_lib.build_strategy('one_device'),
                 model_dir) as trainer:
      initial = [v.numpy() for v in trainer.model.trainable_variables]
      policy = keras.mixed_precision.global_policy().name
      determinism = tf_config.is_op_determinism_enabled()
      trainer.train(evaluate=True)
      trained = [v.numpy() for v in trainer.model.trainable_variables]
      weights = str(tmp_path_factory.mktemp('weights'))
      trainer.model.save_weights(os.path.join(weights, 'all.weights.h5'))
      trainer.model.backbone.save_weights(
          os.path.join(weights, 'backbone.weights.h5'))
  finally:
    tf_config.disable_op_determinism()  # TF has no public switch-off
    keras.mixed_precision.set_global_policy('float32')
  return dict(model_dir=model_dir, task=task, initial=initial,
              trained=trained, policy=policy, determinism=determinism,
              weights=weights)


def test_trainer_steps_checkpoints_and_evaluation(trainer_run):
  model_dir = trainer_run['model_dir']
  # train_steps 6 in loops of steps_per_loop 2: one train summary a loop.
  assert [s for s, _ in _scalars(os.path.join(model_dir, 'train'), 'loss')
          ] == [2, 4, 6]
  # checkpoint_interval 4 saves at 4 and at the end; max_to_keep 1.
  state = tf.train.get_checkpoint_state(model_dir)
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths
          ] == ['ckpt-6']
  # eval_interval 2: evaluations at 2, 4, 6, each of eval_steps 1 batch.
  assert trainer_run['task'].eval_calls == [1, 1, 1]
  # best_metric AP with best_metric_mode min keeps step 4 (AP 0.2).
  with open(os.path.join(model_dir, 'best', 'best.json')) as f:
    best = json.load(f)
  assert (best['metric'], best['step'], best['value']) == ('AP', 4, 0.2)
  assert best['checkpoint'] == 'ckpt-4'  # and the earlier best is gone:
  assert sorted(n.split('.')[0] for n in os.listdir(
      os.path.join(model_dir, 'best')) if n.startswith('ckpt')) == [
          'ckpt-4', 'ckpt-4']
  # num_summary_images 2 pictures at each evaluation.
  assert trainer_run['task'].summary_counts == [2, 2, 2]


def test_best_json_names_an_existing_checkpoint_after_a_stop(
    tmp_path, monkeypatch):
  """A run stopped after saving a new best/ checkpoint but before writing
  best.json keeps the checkpoint that best.json names."""
  task = FakeDetection(_run_config(train_steps=4, steps_per_loop=2,
                                   eval_interval=2, best_metric='AP',
                                   best_metric_mode='min'))
  real_write = trainer_lib.atomic_write

  def stop_at_the_second_best(path, text):
    if path.endswith('best.json') and '"step": 4' in text:
      raise KeyboardInterrupt('stopped between the save and best.json')
    return real_write(path, text)

  monkeypatch.setattr(trainer_lib, 'atomic_write', stop_at_the_second_best)
  with Trainer(task.config, task, strategy_lib.build_strategy('one_device'),
               str(tmp_path)) as trainer:
    with pytest.raises(KeyboardInterrupt):
      trainer.train(evaluate=True)
  with open(tmp_path / 'best' / 'best.json') as f:
    best = json.load(f)
  assert (best['step'], best['checkpoint']) == (2, 'ckpt-2')
  reader = tf.train.load_checkpoint(str(tmp_path / 'best' / 'ckpt-2'))
  assert int(reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE')) == 2


def test_trainer_precision_determinism_and_input(trainer_run):
  assert trainer_run['policy'] == 'mixed_bfloat16'  # mixed_precision
  assert trainer_run['determinism']  # deterministic
  # checkpoint_input: the checkpoint holds the input iterator's state.
  latest = tf.train.latest_checkpoint(trainer_run['model_dir'])
  assert any('iterator' in name for name, _ in tf.train.list_variables(latest))


def test_log_interval_seconds_prints_every_loop(tmp_path, capsys):
  task = FakeDetection(_run_config(train_steps=4, steps_per_loop=1,
                                   log_interval_seconds=0.0))
  with Trainer(task.config, task, strategy_lib.build_strategy('one_device'),
               str(tmp_path)) as trainer:
    trainer.train()
  lines = [l for l in capsys.readouterr().out.splitlines()
           if l.startswith('step ')]
  assert len(lines) == 4, lines  # the default (10 s): first and last only


def test_l2_and_clipnorm_act_in_the_step(trainer_run):
  l2 = _scalars(os.path.join(trainer_run['model_dir'], 'train'), 'l2_loss')
  assert all(value > 0 for _, value in l2)  # optimizer.l2_weight_decay
  # optimizer.global_clipnorm 1e-9 with SGD at learning rate 1: 6 steps
  # move no weight by more than 6e-9 (unclipped, they move by ~1e-2).
  moved = max(float(np.max(np.abs(a - b))) for a, b in
              zip(trainer_run['initial'], trainer_run['trained']))
  assert moved < 1e-7


def test_seed_sets_the_initial_weights(tmp_path):
  def initial(seed, name):
    task = FakeDetection(_run_config(seed=seed))
    trainer = Trainer(task.config, task,
                      strategy_lib.build_strategy('one_device'),
                      str(tmp_path / name))
    return np.concatenate([v.numpy().ravel()
                           for v in trainer.model.trainable_variables])
  assert np.array_equal(initial(3, 'a'), initial(3, 'b'))
  assert not np.array_equal(initial(3, 'c'), initial(4, 'd'))


@pytest.mark.parametrize('modules', ['all', 'backbone'])
def test_init_checkpoint_and_modules(trainer_run, tmp_path, modules):
  path = os.path.join(trainer_run['weights'], f'{modules}.weights.h5')
  task = FakeDetection(_run_config(init_checkpoint=path,
                                   init_checkpoint_modules=modules))
  trainer = Trainer(task.config, task,
                    strategy_lib.build_strategy('one_device'), str(tmp_path))
  trainer.restore()
  reference = task.build_model()
  reference.load_weights(os.path.join(trainer_run['weights'],
                                      'all.weights.h5'))
  same = [np.array_equal(a.numpy(), b.numpy()) for a, b in
          zip(trainer.model.weights, reference.weights)]
  backbone = {id(w) for w in trainer.model.backbone.weights}
  in_backbone = [id(w) in backbone for w in trainer.model.weights]
  assert all(s for s, b in zip(same, in_backbone) if b)
  head_loaded = all(s for s, b in zip(same, in_backbone) if not b)
  assert head_loaded == (modules == 'all')


class WithHostOp(FakeDetection):
  """Its loss passes through a host (NumPy) op, which XLA cannot compile:
  a compiled step fails, an uncompiled one runs."""

  def losses(self, model, outputs, labels):
    losses = dict(super().losses(model, outputs, labels))
    losses['total_loss'] = tf.numpy_function(
        lambda x: x, [losses['total_loss']], tf.float32, stateful=False)
    return losses


@pytest.mark.parametrize('jit_compile', [False, True])
def test_jit_compile_compiles_the_replica_step(tmp_path, jit_compile):
  task = WithHostOp(_run_config(jit_compile=jit_compile))
  strategy = strategy_lib.build_strategy('one_device')
  with Trainer(task.config, task, strategy, str(tmp_path)) as trainer:
    iterator = iter(strategy.distribute_datasets_from_function(
        task.train_dataset))
    step = trainer.train_loop_fn()
    if not jit_compile:
      assert bool(step(iterator, tf.constant(1))[1])
      return
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match='unsupported operations.*PyFunc'):
      step(iterator, tf.constant(1))
