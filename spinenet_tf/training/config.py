"""Experiment configs: typed dataclasses read strictly from YAML.

    config = load_experiment('spinenet_tf/configs/demo_retinanet_synthetic.yaml',
                             overrides=['trainer.train_steps=20',
                                        'optimizer.global_clipnorm=10'])

Every key is checked: an unknown key, a value of the wrong type or outside
its choices raises ValueError naming the dotted key. `model` holds the
`export.model_config` layout (backbone, input_size, num_classes plus any
keyword of the detector's builder (model.type: `models.factory.DETECTORS`)
or of `build_classifier`); its extra keys are checked against those
builders' signatures and defaults' types.
"""

import dataclasses
import inspect
import json
import os
import typing

import tensorflow as tf
import yaml

from spinenet_tf import checks, io_utils, results
from spinenet_tf.checkpoints import INIT_MODULES
from spinenet_tf.data import label_map as label_map_lib
from spinenet_tf.data.classification_input import DATASETS
from spinenet_tf.data.detection_input import SOURCES, SYNTHETIC
from spinenet_tf.detection.coco_eval import METRICS as COCO_METRICS
from spinenet_tf.layers.fpn import FPN_OPTIONS
from spinenet_tf.models import backbone as backbone_lib
from spinenet_tf.models import classifier, factory, pyramid, resnet
from spinenet_tf.models.factory import TASKS

MODEL_REQUIRED = {'backbone': (str, int), 'input_size': (int, list),
                  'num_classes': (int,)}


def _choices(*values, default):
  return dataclasses.field(default=default, metadata={'choices': values})


def _range(default, low=None, high=None, low_open=False, high_open=False,
           factory=None):
  """A field whose value (each item, for lists) must lie in the range."""
  bounds = dict(low=low, high=high, low_open=low_open, high_open=high_open)
  if factory is not None:
    return dataclasses.field(default_factory=factory,
                             metadata={'range': bounds})
  return dataclasses.field(default=default, metadata={'range': bounds})


@dataclasses.dataclass
class DataConfig:
  """An input pipeline. `source`: detection 'tfrecord', 'tfds' (coco/2017),
  'synthetic' or 'synthetic_scenes' (written to data_dir when missing, with
  synthetic_num_images; set model.num_classes to 13 for the scenes);
  classification a TFDS name ('i_naturalist2017', 'i_naturalist2021',
  'imagenet2012')."""
  source: str = 'synthetic'
  file_pattern: typing.Optional[str] = None
  data_dir: typing.Optional[str] = None
  split: typing.Optional[str] = None
  global_batch_size: int = _range(8, 1)
  max_num_instances: int = _range(100, 1)
  scale_range: typing.List[float] = _range(
      None, 0, low_open=True, factory=lambda: [0.5, 2.0])
  randaugment: typing.Optional[typing.List[int]] = _range(None, 0)
  label_smoothing: float = _range(0.0, 0, 1, high_open=True)
  shuffle_buffer: int = _range(1000, 0)
  seed: typing.Optional[int] = None
  synthetic_num_images: int = _range(256, 1)
  # Detection evaluation: a COCO-format JSON whose annotations are the
  # ground truth (AP as pycocotools gives on it), e.g. the file the records
  # were converted from; null: the records' own boxes.
  annotation_file: typing.Optional[str] = None


@dataclasses.dataclass
class OptimizerConfig:
  """`l2_weight_decay` adds wd * sum(w**2) / 2 over kernels (not BN, not
  biases) to the loss; `global_clipnorm` clips the all-reduced gradients."""
  type: str = _choices('sgd', 'adam', 'adamw', default='sgd')
  momentum: float = _range(0.9, 0, 1, high_open=True)  # sgd only
  nesterov: bool = False  # sgd only
  # Keras's decoupled weight decay (any type); null: 0.004 for adamw (the
  # Keras default), none for sgd and adam.
  weight_decay: typing.Optional[float] = _range(None, 0)
  l2_weight_decay: float = _range(0.0, 0)
  global_clipnorm: typing.Optional[float] = _range(None, 0, low_open=True)
  use_ema: bool = False
  ema_momentum: float = _range(0.9999, 0, 1, high_open=True)  # with use_ema


@dataclasses.dataclass
class ScheduleConfig:
  """Learning rate: linear warmup from warmup_learning_rate over
  warmup_steps, then constant, step (learning_rate * multipliers[i] after
  boundaries[i]) or cosine decay over decay_steps (default: the rest)."""
  type: str = _choices('constant', 'step', 'cosine', default='constant')
  learning_rate: float = _range(0.01, 0)
  warmup_steps: int = _range(0, 0)
  warmup_learning_rate: float = _range(0.0, 0)  # with warmup_steps > 0
  boundaries: typing.List[int] = _range(None, 1, factory=list)  # step
  multipliers: typing.List[float] = _range(None, 0, factory=list)  # step
  decay_steps: typing.Optional[int] = _range(None, 1)  # cosine
  alpha: float = _range(0.0, 0, 1)  # cosine


# What each task's evaluation returns (trainer.best_metric names one).
EVAL_METRICS = {'detection': COCO_METRICS,
                'classification': ('top_1_accuracy', 'top_5_accuracy')}


@dataclasses.dataclass
class TrainerConfig:
  """The loop. Checkpoints every checkpoint_interval steps and at the end;
  evaluation every eval_interval steps (0: at the end) over eval_steps
  batches (0: all); the best checkpoint by best_metric is kept in best/."""
  train_steps: int = _range(100, 1)
  steps_per_loop: int = _range(10, 1)
  checkpoint_interval: int = _range(100, 1)
  max_to_keep: int = _range(3, 1)
  eval_interval: int = _range(0, 0)
  eval_steps: int = _range(0, 0)
  best_metric: typing.Optional[str] = None
  best_metric_mode: str = _choices('max', 'min', default='max')
  mixed_precision: str = _choices('float32', 'bfloat16', 'float16',
                                  'float64', default='float32')
  jit_compile: bool = False
  # Save the input position with each checkpoint so a resumed run reads
  # the batches an uninterrupted one would (training/train_input.py;
  # one_device and mirrored). null: on when `deterministic`.
  checkpoint_input: typing.Optional[bool] = None
  seed: typing.Optional[int] = None
  # tf.config.experimental.enable_op_determinism() (set `seed` too): the
  # same command gives the same weights, resumed or not.
  deterministic: bool = False
  num_summary_images: int = _range(3, 0)
  log_interval_seconds: float = _range(10.0, 0)  # console line at most this often
  # Fine-tuning: weights to start a fresh run from (not a resumed one): a
  # .weights.h5 file or TF checkpoint of the whole model ('all'), or a
  # backbone .weights.h5 file ('backbone'), e.g. from convert_checkpoint.py.
  init_checkpoint: typing.Optional[str] = None
  # 'all_but_class_head': a detector of another number of classes (e.g. a
  # converted Model Garden COCO RetinaNet) minus its class logits.
  init_checkpoint_modules: str = _choices(*INIT_MODULES, default='all')


@dataclasses.dataclass
class ExperimentConfig:
  task: str = _choices(*TASKS, default='detection')
  model: typing.Dict[str, typing.Any] = dataclasses.field(default_factory=dict)
  # Detection: the label map of the records (spinenet-coco-to-tfrecord's
  # <prefix>_label_map.json): model.num_classes follows from it, records
  # holding another class id are refused, metrics and pictures name classes.
  label_map: typing.Optional[str] = None
  train_data: DataConfig = dataclasses.field(default_factory=DataConfig)
  eval_data: DataConfig = dataclasses.field(default_factory=DataConfig)
  optimizer: OptimizerConfig = dataclasses.field(
      default_factory=OptimizerConfig)
  schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
  trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)

  def as_dict(self):
    return dataclasses.asdict(self)


def _type_ok(value, annotation):
  origin = typing.get_origin(annotation)
  if annotation is typing.Any:
    return True
  if origin is typing.Union:
    return any(_type_ok(value, a) for a in typing.get_args(annotation))
  if annotation is type(None):
    return value is None
  if origin in (list, tuple):
    (item,) = typing.get_args(annotation)[:1]
    return isinstance(value, (list, tuple)) and all(
        _type_ok(v, item) for v in value)
  if origin is dict:
    return isinstance(value, dict)
  if annotation is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if annotation is int:
    return isinstance(value, int) and not isinstance(value, bool)
  return isinstance(value, annotation)


def _type_name(annotation):
  return getattr(annotation, '__name__', None) or str(annotation).replace(
      'typing.', '')


def _from_dict(cls, data, prefix):
  if not isinstance(data, dict):
    raise ValueError(f'{prefix or "config"}: expected a mapping, got '
                     f'{data!r}.')
  fields = {f.name: f for f in dataclasses.fields(cls)}
  hints = typing.get_type_hints(cls)
  values = {}
  for key, value in data.items():
    dotted = f'{prefix}{key}'
    if key not in fields:
      raise ValueError(f'unknown config key {dotted!r}; known keys here: '
                       f'{sorted(fields)}.')
    annotation = hints[key]
    if dataclasses.is_dataclass(annotation):
      values[key] = _from_dict(annotation, value, dotted + '.')
      continue
    if not _type_ok(value, annotation):
      raise ValueError(f'config key {dotted!r} must be '
                       f'{_type_name(annotation)}, got {value!r}.')
    choices = fields[key].metadata.get('choices')
    if choices and value not in choices:
      raise ValueError(f'config key {dotted!r} must be one of '
                       f'{list(choices)}, got {value!r}.')
    bounds = fields[key].metadata.get('range')
    if bounds and value is not None:
      for item in value if isinstance(value, list) else [value]:
        checks.number(f'config key {dotted!r}', item, **bounds)
    floats = annotation is float or float in typing.get_args(annotation)
    values[key] = float(value) if floats and isinstance(value, int) else value
  return cls(**values)


def model_keys(task, model):
  """{model key: its default} accepted by the builders of the task (and,
  for detection, of the model.type the `model` section names)."""
  if task == 'detection':
    detector = factory.detector_type(model)
    builders = [detector.build]
    keys = dict(detector.options, type=None)
  else:
    builders = [classifier.build_classifier, backbone_lib.build_backbone,
                backbone_lib.SpineNet.__init__]
    keys = {}
  for builder in builders:
    for name, param in inspect.signature(builder).parameters.items():
      if param.kind is param.POSITIONAL_OR_KEYWORD:
        keys.setdefault(name, param.default)
  for name in ('self', 'backbone_model_id', 'model_id_or_specs',
               'block_specs', 'input_shape', 'name', 'backbone_kwargs',
               'decoder_kwargs'):
    keys.pop(name, None)
  keys.update(backbone=None, input_size=None, num_classes=None)
  if task == 'detection':
    keys.update(backbone_kwargs=None, decoder_kwargs=None)
  return keys


def check_model(task, model):
  """Checks the `model` section; errors name the `model.` key."""
  for key, types in MODEL_REQUIRED.items():
    if key not in model:
      hint = (' (or set label_map: it follows from there)'
              if key == 'num_classes' and task == 'detection' else '')
      raise ValueError(f'config key model.{key} is required{hint}.')
    if not isinstance(model[key], types) or isinstance(model[key], bool):
      raise ValueError(f'config key model.{key} has the wrong type: '
                       f'{model[key]!r}.')
  detector = model.get('type', factory.DEFAULT_DETECTOR)
  if task == 'detection' and detector not in factory.DETECTORS:
    raise ValueError(f'config key model.type must be one of '
                     f'{sorted(factory.DETECTORS)}, got {detector!r}.')
  known = model_keys(task, model)
  for key, value in model.items():
    _check_known('model.', key, known, f' for task {task!r}')
    default = known[key]
    if default is None or value is None or default is inspect.Parameter.empty:
      continue
    if isinstance(default, (list, tuple)):
      ok = isinstance(value, (list, tuple))
    elif isinstance(default, float):
      ok = _type_ok(value, float)
    else:
      ok = isinstance(value, type(default)) and (
          isinstance(value, bool) == isinstance(default, bool))
    if not ok:
      raise ValueError(f'config key model.{key} must be '
                       f'{type(default).__name__}, got {value!r}.')
  if model.get('decoder') not in (None, *pyramid.DECODERS):
    raise ValueError(f'config key model.decoder must be null or one of '
                     f'{list(pyramid.DECODERS)}, got {model["decoder"]!r}.')
  if isinstance(model['backbone'], str) and resnet.is_resnet_id(
      model['backbone']):
    backbone_options = resnet.RESNET_OPTIONS
  else:
    backbone_options = (backbone_lib.BACKBONE_OPTIONS +
                        backbone_lib.SCALING_OVERRIDES)
  _check_options('backbone_kwargs', model.get('backbone_kwargs'),
                 backbone_options)
  _check_options('decoder_kwargs', model.get('decoder_kwargs'), FPN_OPTIONS)


def _check_options(key, options, known):
  """model.backbone_kwargs / decoder_kwargs (detection): a mapping of the
  backbone's or decoder's options."""
  if options is None:
    return
  if not isinstance(options, dict):
    raise ValueError(f'config key model.{key} must be a mapping, '
                     f'got {options!r}.')
  for option in options:
    _check_known(f'model.{key}.', option, known)


def _check_known(prefix, key, known, context=''):
  """Refuses a model key that is unknown or deliberately not taken."""
  if key in _REFUSED_MODEL_KEYS:
    raise ValueError(f'config key {prefix}{key} is not taken: '
                     f'{_REFUSED_MODEL_KEYS[key]}.')
  if key not in known:
    raise ValueError(f'unknown config key {prefix}{key}{context}; known: '
                     f'{sorted(known)}.')


# Keys that act only in some settings: (section, key) -> (applies(config),
# where they act). Set to anything but their default elsewhere, they are
# refused rather than ignored.
_DETECTION = lambda c: c.task == 'detection'  # noqa: E731
_CLASSIFICATION = lambda c: c.task == 'classification'  # noqa: E731
_CONDITIONAL = {
    ('optimizer', 'momentum'): (lambda c: c.optimizer.type == 'sgd',
                                'optimizer.type sgd'),
    ('optimizer', 'nesterov'): (lambda c: c.optimizer.type == 'sgd',
                                'optimizer.type sgd'),
    ('optimizer', 'ema_momentum'): (lambda c: c.optimizer.use_ema,
                                    'optimizer.use_ema true'),
    ('schedule', 'boundaries'): (lambda c: c.schedule.type == 'step',
                                 'schedule.type step'),
    ('schedule', 'multipliers'): (lambda c: c.schedule.type == 'step',
                                  'schedule.type step'),
    ('schedule', 'decay_steps'): (lambda c: c.schedule.type == 'cosine',
                                  'schedule.type cosine'),
    ('schedule', 'alpha'): (lambda c: c.schedule.type == 'cosine',
                            'schedule.type cosine'),
    ('schedule', 'warmup_learning_rate'): (lambda c: c.schedule.warmup_steps,
                                           'schedule.warmup_steps > 0'),
    ('trainer', 'best_metric_mode'): (lambda c: c.trainer.best_metric,
                                      'trainer.best_metric'),
    ('trainer', 'init_checkpoint_modules'): (
        lambda c: c.trainer.init_checkpoint, 'trainer.init_checkpoint'),
    ('trainer', 'num_summary_images'): (_DETECTION, 'task detection'),
    ('label_map', None): (_DETECTION, 'task detection'),
    ('train_data', 'annotation_file'): (
        lambda c: False, 'eval_data (the evaluation ground truth)'),
    ('eval_data', 'annotation_file'): (_DETECTION, 'task detection'),
}
for _section in ('train_data', 'eval_data'):
  _CONDITIONAL[(_section, 'randaugment')] = (_CLASSIFICATION,
                                             'task classification')
  _CONDITIONAL[(_section, 'label_smoothing')] = (_CLASSIFICATION,
                                                 'task classification')
  _CONDITIONAL[(_section, 'file_pattern')] = (
      lambda c, s=_section: getattr(c, s).source == 'tfrecord',
      "source 'tfrecord'")
  for _key in ('split', 'data_dir'):  # tfrecord reads file_pattern only
    _CONDITIONAL[(_section, _key)] = (
        lambda c, s=_section: not (c.task == 'detection' and
                                   getattr(c, s).source == 'tfrecord'),
        "a source other than 'tfrecord'")
  _CONDITIONAL[(_section, 'synthetic_num_images')] = (
      lambda c, s=_section: getattr(c, s).source in SYNTHETIC,
      "source 'synthetic' or 'synthetic_scenes'")
  for _key in ('max_num_instances',):
    _CONDITIONAL[(_section, _key)] = (_DETECTION, 'task detection')
_CONDITIONAL[('train_data', 'scale_range')] = (_DETECTION, 'task detection')
for _key in ('scale_range', 'shuffle_buffer', 'randaugment',
             'label_smoothing', 'seed'):
  _CONDITIONAL[('eval_data', _key)] = (lambda c: False, 'training data')
# The model's weight penalty is the optimizer's (one place, one meaning).
_REFUSED_MODEL_KEYS = {
    'kernel_regularizer': 'use optimizer.l2_weight_decay (the trainer adds '
                          'it to the loss; a model regularizer would not be '
                          'trained)'}


def check_consistency(config):
  """Refuses keys set where they have no effect, sources the task cannot
  read, and malformed lists; errors name the dotted key."""
  for (section, key), (applies, where) in _CONDITIONAL.items():
    if key is None:  # a top-level key
      value, default = getattr(config, section), getattr(ExperimentConfig(),
                                                         section)
    else:
      value = getattr(getattr(config, section), key)
      default = getattr(type(getattr(config, section))(), key)
    if value != default and not applies(config):
      name = section if key is None else f'{section}.{key}'
      raise ValueError(f'config key {name} = {value!r} has no effect '
                       f'here: it applies only with {where}.')
  sources = SOURCES if config.task == 'detection' else tuple(DATASETS)
  for section in ('train_data', 'eval_data'):
    data = getattr(config, section)
    if data.source not in sources:
      raise ValueError(f'config key {section}.source must be one of '
                       f'{list(sources)} for task {config.task!r}, got '
                       f'{data.source!r}.')
    if (config.task == 'detection' and data.source == 'tfrecord'
        and not data.file_pattern):
      raise ValueError(f'config key {section}.file_pattern is required with '
                       f"{section}.source 'tfrecord' (e.g. records/"
                       f"{'train' if section == 'train_data' else 'val'}"
                       '-*.tfrecord, as spinenet-coco-to-tfrecord writes '
                       'them).')
    slots = (SYNTHETIC[data.source].NUM_CLASSES if config.task == 'detection'
             and data.source in SYNTHETIC else 0)
    if config.model.get('num_classes', slots) < slots:
      raise ValueError(f'config key model.num_classes must be >= {slots} for '
                       f'{section}.source {data.source!r} (its class slots), '
                       f'got {config.model["num_classes"]!r}.')
    if len(data.scale_range) != 2 or data.scale_range[0] > data.scale_range[1]:
      raise ValueError(f'config key {section}.scale_range must be [min, max] '
                       f'with min <= max, got {data.scale_range!r}.')
    if data.randaugment is not None and len(data.randaugment) != 2:
      raise ValueError(f'config key {section}.randaugment must be '
                       f'[num_layers, magnitude], got {data.randaugment!r}.')
  schedule = config.schedule
  if len(schedule.boundaries) != len(schedule.multipliers):
    raise ValueError('config keys schedule.boundaries and '
                     'schedule.multipliers need the same length, got '
                     f'{schedule.boundaries!r} and {schedule.multipliers!r}.')
  if list(schedule.boundaries) != sorted(set(schedule.boundaries)):
    raise ValueError('config key schedule.boundaries must increase, got '
                     f'{schedule.boundaries!r}.')


# With optimizer.use_ema, the share of the first step's weights left in the
# average at the end of the run (ema_momentum ** train_steps) must be below
# this: else the evaluated and exported model is mostly the initial one.
EMA_START_SHARE = 0.05


def _check_ema(config):
  momentum, steps = config.optimizer.ema_momentum, config.trainer.train_steps
  if config.optimizer.use_ema and momentum ** steps > EMA_START_SHARE:
    highest = EMA_START_SHARE ** (1 / steps)
    raise ValueError(
        f'config key optimizer.ema_momentum {momentum} over trainer.'
        f'train_steps {steps} keeps {100 * momentum ** steps:.0f}% of the '
        'first step\'s weights in the average that is evaluated and '
        f'exported; use ema_momentum <= {highest:.6f} (at most '
        f'{100 * EMA_START_SHARE:g}% left) or more steps.')


def _check_best_metric(config):
  """trainer.best_metric must be a metric the task's evaluation returns
  (checked on every worker when the config is read, not at the first
  evaluation on the chief alone)."""
  name = config.trainer.best_metric
  if name is None or name in EVAL_METRICS[config.task]:
    return
  per_class = (config.task == 'detection' and name.startswith('AP/')
               and config.eval_data.annotation_file)
  if per_class and config.label_map is not None:
    names = label_map_lib.read_label_map(config.label_map).names.values()
    per_class = name[len('AP/'):] in names
  if not per_class:
    extra = (" or 'AP/<class name>' (with eval_data.annotation_file)"
             if config.task == 'detection' else '')
    raise ValueError(f'config key trainer.best_metric {name!r} is not a '
                     f'{config.task} metric: one of '
                     f'{list(EVAL_METRICS[config.task])}{extra}.')


def _num_classes_from_label_map(config):
  """Sets model.num_classes from the label map (or checks it)."""
  names = label_map_lib.read_label_map(config.label_map)
  given = config.model.get('num_classes')
  if given is None:
    config.model['num_classes'] = names.num_classes
  elif given != names.num_classes:
    raise ValueError(
        f'config key model.num_classes = {given!r} disagrees with label_map '
        f'{config.label_map}: its largest class id is {max(names.names)}, so '
        f'num_classes is {names.num_classes}; leave model.num_classes out '
        'to take it from the label map.')


def config_from_dict(data):
  """A checked `ExperimentConfig` from a plain dict; with a label_map,
  model.num_classes follows from it."""
  config = _from_dict(ExperimentConfig, data or {}, '')
  if config.label_map is not None and config.task == 'detection':
    _num_classes_from_label_map(config)
  check_model(config.task, config.model)
  check_consistency(config)
  _check_best_metric(config)
  _check_ema(config)
  return config


def _split_overrides(text):
  """'a.b=1,c=[1,2]' -> ['a.b=1', 'c=[1,2]'] (commas inside brackets or
  quotes stay)."""
  parts, depth, quote, current = [], 0, None, ''
  for ch in text:
    if quote:
      quote = None if ch == quote else quote
    elif ch in '\'"':
      quote = ch
    elif ch in '[{':
      depth += 1
    elif ch in ']}':
      depth -= 1
    elif ch == ',' and depth == 0:
      parts.append(current)
      current = ''
      continue
    current += ch
  parts.append(current)
  return [p.strip() for p in parts if p.strip()]


def _merge(base, update):
  for key, value in update.items():
    if isinstance(value, dict) and isinstance(base.get(key), dict):
      _merge(base[key], value)
    else:
      base[key] = value
  return base


def apply_overrides(data, overrides):
  """Applies overrides to a raw config dict. Each override is a YAML/JSON
  mapping ('{trainer: {train_steps: 5}}') or 'dotted.key=yaml value'
  items separated by commas."""
  data = dict(data or {})
  for override in overrides or ():
    parsed = yaml.safe_load(override) if override.strip()[:1] == '{' else None
    if isinstance(parsed, dict):
      _merge(data, json.loads(json.dumps(parsed)))
      continue
    for item in _split_overrides(override):
      if '=' not in item:
        raise ValueError(f'override {item!r} is not key=value.')
      key, text = item.split('=', 1)
      node = data
      keys = key.strip().split('.')
      for part in keys[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
          raise ValueError(f'override {key!r}: {part!r} is not a section.')
      node[keys[-1]] = yaml.safe_load(text)
  return data


def load_experiment(path=None, overrides=()):
  """Reads a YAML experiment (local or gs://), applies overrides, checks."""
  data = {}
  if path:
    try:
      data = yaml.safe_load(io_utils.read_text(path, 'config file')) or {}
    except yaml.YAMLError as e:
      raise ValueError(f'config file {path}: not valid YAML: {e}') from None
  try:
    return config_from_dict(apply_overrides(data, overrides))
  except ValueError as e:
    raise ValueError(f'{path}: {e}' if path else str(e)) from e


PARAMS_FILE = 'params.yaml'  # a run's config, in its model_dir
# Sections a run's checkpoints belong to: another value cannot resume it,
# except the detection settings, which change no weight.
RUN_DEFINING_SECTIONS = ('task', 'model')
DETECTION_KEYS = tuple(f'model.{key}' for key in (
    'score_threshold', 'pre_nms_top_k', 'iou_threshold', 'max_detections',
    'class_agnostic_nms'))


def check_same_model(config, model_dir):
  """Refuses to resume training the run in `model_dir` with another task
  or model than its params.yaml records, naming the keys."""
  path = os.path.join(model_dir, PARAMS_FILE)
  if not tf.io.gfile.exists(path):
    return
  try:
    recorded = yaml.safe_load(io_utils.read_text(path, 'run config'))
  except yaml.YAMLError as e:
    raise ValueError(f'run config {path}: not valid YAML: {e}') from None
  if not isinstance(recorded, dict):
    return
  recorded = {k: v for k, v in results.flatten(
      {k: recorded[k] for k in RUN_DEFINING_SECTIONS if k in recorded}
  ).items() if k not in DETECTION_KEYS}
  current = results.flatten(config.as_dict())
  for flat in (recorded, current):  # a detector without model.type: RetinaNet
    if flat.get('task') == 'detection':
      flat.setdefault('model.type', factory.DEFAULT_DETECTOR)
  changed = results.differences(
      recorded, {k: v for k, v in current.items() if k in recorded})
  if changed:
    raise ValueError(f'{model_dir} holds a run of another model '
                     f'({"; ".join(changed)}): give its {PARAMS_FILE} as '
                     '--config_file to go on with it, or another --model_dir.')


def save_experiment(config, path):
  """Writes the resolved config as YAML (next to the checkpoints),
  atomically: a reader sees the old file or the new one."""
  tf.io.gfile.makedirs(os.path.dirname(path) or '.')
  io_utils.atomic_write(path, yaml.safe_dump(config.as_dict(), sort_keys=False))
