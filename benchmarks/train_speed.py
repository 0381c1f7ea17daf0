"""Training throughput of RetinaNet-SpineNet-49: ours vs Model Garden's.

One process, one CPU device (`tf.distribute.OneDeviceStrategy`), float32,
the same global batch of random images and the same ground truth (a few
random boxes per image) for both, fed from an in-memory tf.data dataset that
repeats that one batch through a distributed iterator:

  ours          the real training path: `Trainer.train_loop_fn()` (a
                tf.function running `strategy.run(replica_step)` from the
                iterator) of a detection `Trainer` built from a config
                (`config_from_dict`); labels are padded boxes and classes,
                anchor assignment runs inside the step (in the loss).
  Model Garden  `RetinaNetTask.train_step(inputs, model, optimizer, metrics)`
                under `strategy.run` in a tf.function, the task, model,
                optimizer and metrics built from the `retinanet_spinenet_coco`
                experiment; labels are its parser's per-anchor targets
                (cls_targets, box_targets, anchor_boxes per level, cls_weights,
                box_weights, image_info), made once beforehand by its own
                anchor generator and `AnchorLabeler`, so its step does no
                anchor assignment.

Same model settings on both sides: SpineNet model_id (default '49'), levels
3-7, swish, BatchNorm momentum 0.99 / epsilon 1e-3 (no sync BN), stochastic
depth 0.2 (the recipe's), anchors 3 scales x 3 aspect ratios of size 3, head
4 convs x 256 filters, focal loss (alpha 0.25, gamma 1.5) + Huber box loss
(delta 0.1, weight 50), anchor IoU thresholds 0.5 / 0.5 (Model Garden's
parser defaults), L2 weight decay 4e-5 on kernels, SGD momentum 0.9 with a
constant learning rate 0.001, no gradient clipping (at 0.01 both sides
reached a NaN loss in bfloat16 at 128 px within 25 steps on the same
batch, on an AMD EPYC with AVX-512 BF16: 2026-12-07).

Each side is traced first (`get_concrete_function`: Python tracing), then
called once (graph optimisation + first step), then `warmup` more steps;
then `steps` steps, ours and Model Garden's alternating step by step, each
call waited for. Reported: median seconds per step, images/s = batch /
median, the ratio ours / Model Garden (> 1: ours is faster), the median
process CPU time per step (all threads; steadier than wall time when other
work shares the cores), and the trace and first-call times.

  python scripts/bench_train.py                       # 256x256, batch 4
  python scripts/bench_train.py --quick               # 128x128, 3 steps
  python scripts/bench_train.py --breakdown           # + forward/loss/grad
  python scripts/bench_train.py --profile_ops         # + op time by type
  python scripts/bench_train.py --output train.json
"""
import math
import statistics
import sys
import tempfile
import time

from absl import flags

from spinenet_tf import cli
from benchmarks import profile
from benchmarks.report import machine_line, write_report

FLAGS = flags.FLAGS

MG = 'Model Garden'
NUM_OBJECTS = 8           # real boxes per image
MAX_NUM_INSTANCES = 100   # our padded ground truth (the recipe's)
L2_WEIGHT_DECAY = 4e-5
MOMENTUM = 0.9
LEARNING_RATE = 0.001
STOCHASTIC_DEPTH = 0.2
# Model Garden's parser defaults (ours defaults to 0.5 / 0.4).
MATCH_THRESHOLD, UNMATCHED_THRESHOLD = 0.5, 0.5


def _progress(message):
  print(message, file=sys.stderr, flush=True)


def _sync(value):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  for t in tf.nest.flatten(value):
    t.numpy()


def _timed(fn, *args):
  return _timed_cpu(fn, *args)[0]


def _timed_cpu(fn, *args):
  """(wall seconds, process CPU seconds, result) of one call, waited for."""
  start, cpu = time.perf_counter(), time.process_time()
  result = fn(*args)
  _sync(result)
  return time.perf_counter() - start, time.process_time() - cpu, result


# Inputs.


def synthetic_batch(batch_size, image_size, num_classes, seed=0):
  """Images [B, S, S, 3] float32 ~ N(0, 1), boxes [B, M, 4] pixels
  (ymin, xmin, ymax, xmax) and classes [B, M] int32 (1..num_classes-1,
  -1 padding) with NUM_OBJECTS real boxes per image, as numpy."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  images = rng.normal(size=(batch_size, image_size, image_size, 3)).astype(
      'float32')
  boxes = np.zeros((batch_size, MAX_NUM_INSTANCES, 4), 'float32')
  classes = np.full((batch_size, MAX_NUM_INSTANCES), -1, 'int32')
  sides = rng.uniform(image_size / 16, image_size / 2,
                      (batch_size, NUM_OBJECTS, 2))
  corners = rng.uniform(0, 1, (batch_size, NUM_OBJECTS, 2)) * (
      image_size - sides)
  boxes[:, :NUM_OBJECTS] = np.concatenate([corners, corners + sides], -1)
  classes[:, :NUM_OBJECTS] = rng.integers(1, num_classes,
                                          (batch_size, NUM_OBJECTS))
  return images, boxes, classes


def model_garden_labels(boxes, classes, image_size, match_threshold,
                        unmatched_threshold, min_level=3, max_level=7,
                        num_scales=3, aspect_ratios=(0.5, 1.0, 2.0),
                        anchor_size=3.0):
  """Model Garden's parser labels for the batch: its anchor generator and
  `AnchorLabeler` per image (real boxes only), stacked."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from official.vision.ops import anchor  # pylint: disable=import-outside-toplevel
  anchor_boxes = anchor.build_anchor_generator(
      min_level=min_level, max_level=max_level, num_scales=num_scales,
      aspect_ratios=list(aspect_ratios), anchor_size=anchor_size)(
          image_size=(image_size, image_size))
  labeler = anchor.AnchorLabeler(match_threshold=match_threshold,
                                 unmatched_threshold=unmatched_threshold)
  per_image = []
  for image_boxes, image_classes in zip(boxes, classes):
    real = image_classes >= 0
    cls_targets, box_targets, _, cls_weights, box_weights = (
        labeler.label_anchors(anchor_boxes, tf.constant(image_boxes[real]),
                              tf.constant(image_classes[real][:, None])))
    per_image.append({'cls_targets': cls_targets, 'box_targets': box_targets,
                      'anchor_boxes': anchor_boxes,
                      'cls_weights': cls_weights, 'box_weights': box_weights,
                      'image_info': tf.constant(
                          [[image_size, image_size]] * 2 + [[1.0, 1.0],
                                                            [0.0, 0.0]],
                          tf.float32)})
  return tf.nest.map_structure(lambda *t: tf.stack(t), *per_image)


def _repeated(element):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return lambda input_context=None: tf.data.Dataset.from_tensors(
      element).repeat()


# The two training steps.


def build_ours(strategy, model_id, image_size, batch_size, num_classes,
               images, boxes, classes, model_dir, precision='float32'):
  """Our `Trainer` and its train loop function (one step per call)."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from spinenet_tf.training import config as config_lib
  from spinenet_tf.training.tasks import DetectionTask
  from spinenet_tf.training.trainer import Trainer

  element = (tf.constant(images), {'boxes': tf.constant(boxes),
                                   'classes': tf.constant(classes)})

  class FixedBatchTask(DetectionTask):
    """The detection task reading one fixed in-memory batch, repeated."""
    train_dataset = staticmethod(_repeated(element))

  config = config_lib.config_from_dict({
      'task': 'detection',
      'model': {'backbone': model_id, 'input_size': image_size,
                'num_classes': num_classes, 'activation': 'swish',
                'use_sync_bn': False, 'norm_momentum': 0.99,
                'norm_epsilon': 1e-3, 'num_convs': 4, 'num_filters': 256,
                'num_scales': 3, 'aspect_ratios': [0.5, 1.0, 2.0],
                'anchor_size': 3.0, 'focal_alpha': 0.25, 'focal_gamma': 1.5,
                'huber_delta': 0.1, 'box_loss_weight': 50.0,
                'positive_threshold': MATCH_THRESHOLD,
                'negative_threshold': UNMATCHED_THRESHOLD,
                'backbone_kwargs': {'stochastic_depth_rate':
                                    STOCHASTIC_DEPTH}},
      'train_data': {'global_batch_size': batch_size,
                     'max_num_instances': MAX_NUM_INSTANCES},
      'optimizer': {'type': 'sgd', 'momentum': MOMENTUM,
                    'l2_weight_decay': L2_WEIGHT_DECAY},
      'schedule': {'type': 'constant', 'learning_rate': LEARNING_RATE},
      'trainer': {'train_steps': 1_000_000, 'steps_per_loop': 1, 'seed': 0,
                  'mixed_precision': precision}})
  trainer = Trainer(config, FixedBatchTask(config), strategy, model_dir)
  iterator = iter(strategy.distribute_datasets_from_function(
      trainer.task.train_dataset))
  train_loop = trainer.train_loop_fn()
  one = tf.constant(1)
  return trainer, (lambda: train_loop(iterator, one)), (
      lambda: train_loop.get_concrete_function(iterator, one))


def model_garden_config(model_id, image_size, batch_size, num_classes,
                        precision='float32'):
  """`retinanet_spinenet_coco` with our benchmark's settings."""
  # pylint: disable=import-outside-toplevel
  from official.core import exp_factory
  from official.modeling import optimization
  config = exp_factory.get_exp_config('retinanet_spinenet_coco')
  task = config.task
  task.init_checkpoint = None
  model = task.model
  model.input_size = [image_size, image_size, 3]
  model.num_classes = num_classes
  model.min_level, model.max_level = 3, 7
  model.backbone.spinenet.model_id = model_id
  model.backbone.spinenet.min_level = 3
  model.backbone.spinenet.max_level = 7
  model.backbone.spinenet.stochastic_depth_drop_rate = STOCHASTIC_DEPTH
  model.anchor.num_scales = 3
  model.anchor.aspect_ratios = [0.5, 1.0, 2.0]
  model.anchor.anchor_size = 3.0
  model.norm_activation.use_sync_bn = False
  model.norm_activation.activation = 'swish'
  model.norm_activation.norm_momentum = 0.99
  model.norm_activation.norm_epsilon = 1e-3
  model.head.num_convs = 4
  model.head.num_filters = 256
  model.head.use_separable_conv = False
  task.losses.focal_loss_alpha = 0.25
  task.losses.focal_loss_gamma = 1.5
  task.losses.huber_loss_delta = 0.1
  task.losses.box_loss_weight = 50
  task.losses.l2_weight_decay = L2_WEIGHT_DECAY
  task.train_data.global_batch_size = batch_size
  task.train_data.parser.match_threshold = MATCH_THRESHOLD
  task.train_data.parser.unmatched_threshold = UNMATCHED_THRESHOLD
  config.runtime.mixed_precision_dtype = precision
  config.trainer.optimizer_config = optimization.OptimizationConfig({
      'optimizer': {'type': 'sgd', 'sgd': {'momentum': MOMENTUM}},
      'learning_rate': {'type': 'constant',
                        'constant': {'learning_rate': LEARNING_RATE}}})
  return config


def build_model_garden(strategy, model_id, image_size, batch_size,
                       num_classes, images, boxes, classes,
                       precision='float32'):
  """Model Garden's task, model, optimizer, metrics and its train step
  function (one step per call, from a distributed iterator). The precision
  policy is set as its trainer (`train_lib`) sets it."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from official.modeling import performance
  from official.vision.tasks.retinanet import RetinaNetTask
  config = model_garden_config(model_id, image_size, batch_size, num_classes,
                               precision)
  performance.set_mixed_precision_policy(precision)
  task = RetinaNetTask(config.task)
  parser = config.task.train_data.parser
  anchor = config.task.model.anchor
  labels = model_garden_labels(
      boxes, classes, image_size, parser.match_threshold,
      parser.unmatched_threshold, config.task.model.min_level,
      config.task.model.max_level, anchor.num_scales, anchor.aspect_ratios,
      anchor.anchor_size)
  with strategy.scope():
    model = task.build_model()
    optimizer = task.create_optimizer(config.trainer.optimizer_config,
                                      config.runtime)
    metrics = task.build_metrics(training=True)
  iterator = iter(strategy.distribute_datasets_from_function(
      _repeated((tf.constant(images), labels))))

  @tf.function
  def train_step(iterator):
    logs = strategy.run(
        lambda inputs: task.train_step(inputs, model, optimizer, metrics),
        args=(next(iterator),))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, logs[task.loss],
                           axis=None)

  return (task, model, optimizer, metrics, labels), (
      lambda: train_step(iterator)), (
          lambda: train_step.get_concrete_function(iterator))


# Measurement.


def _warm_up(name, step, trace, warmup):
  start = time.perf_counter()
  trace()
  trace_s = time.perf_counter() - start
  first_s = _timed(step)
  for _ in range(warmup):
    _timed(step)
  _progress(f'{name}: trace {trace_s:.1f} s, first call {first_s:.1f} s')
  return trace_s, first_s


def _count_params(variables):
  return int(sum(v.shape.num_elements() for v in variables))


def measure(image_size=256, batch_size=4, steps=10, warmup=2, quick=False,
            model_id='49', num_classes=91, breakdown=False,
            precision='float32', profile_ops=False):
  """One row per setting: {name, ours, model_garden (images/s), unit,
  ratio (ours / Model Garden), notes} plus seconds_per_step, min_s, max_s,
  trace_s, first_call_s, cpu_seconds_per_step, trainable_params, last_loss
  (total loss with L2 of the last timed step; {ours, model_garden} each) and
  the settings; with `breakdown`, `parts` (seconds of forward, + loss,
  + gradient); with `profile_ops`, `op_seconds` (thread seconds per step by
  TF op type, from a profiler trace of 2 steps). `quick`: 128x128 and at
  most 3 steps after 1 warm-up."""
  # pylint: disable=import-outside-toplevel
  import keras
  from spinenet_tf.training.strategy import build_strategy

  if quick:
    image_size, steps, warmup = (min(image_size, 128), min(steps, 3),
                                 min(warmup, 1))
  if steps < 1 or warmup < 0:
    raise ValueError(f'need steps >= 1 and warmup >= 0, got {steps}, '
                     f'{warmup}.')
  images, boxes, classes = synthetic_batch(batch_size, image_size,
                                           num_classes)
  strategy = build_strategy('one_device')
  with tempfile.TemporaryDirectory() as model_dir:
    ours, ours_step, ours_trace = build_ours(
        strategy, model_id, image_size, batch_size, num_classes, images,
        boxes, classes, model_dir, precision)
    mg, mg_step, mg_trace = build_model_garden(
        strategy, model_id, image_size, batch_size, num_classes, images,
        boxes, classes, precision)
    compiled = {'ours': _warm_up('ours', ours_step, ours_trace, warmup),
                MG: _warm_up(MG, mg_step, mg_trace, warmup)}
    times = {'ours': [], MG: []}
    cpu = {'ours': [], MG: []}
    results = {}
    for i in range(steps):
      for name, step in (('ours', ours_step), (MG, mg_step)):
        wall, cpu_s, results[name] = _timed_cpu(step)
        times[name].append(wall)
        cpu[name].append(cpu_s)
      _progress(f'step {i + 1}/{steps}: ours {times["ours"][-1]:.2f} s, '
                f'{MG} {times[MG][-1]:.2f} s')
    parts = _breakdown(ours, mg, images, boxes, classes, steps) if (
        breakdown) else None
    op_seconds = {'ours': profile.op_seconds(ours_step),
                  'model_garden': profile.op_seconds(mg_step)} if (
                      profile_ops) else None
    (means, finite), mg_loss = results['ours'], results[MG]
    losses = {'ours': float(means[ours.loss_names.index('loss')]),
              MG: float(mg_loss)}
    if not bool(finite) or not all(map(math.isfinite, losses.values())):
      raise FloatingPointError(f'non-finite training loss: {losses}')
    params = {'ours': _count_params(ours.model.trainable_variables),
              MG: _count_params(mg[1].trainable_variables)}
    device = strategy.extended.worker_devices[0]
  keras.backend.clear_session()

  def pair(values):
    return {'ours': values['ours'], 'model_garden': values[MG]}

  median = {k: statistics.median(v) for k, v in times.items()}
  row = {
      'name': f'RetinaNet-SpineNet-{model_id} training step, {precision}, '
              f'{image_size}x{image_size}, batch {batch_size}',
      'ours': batch_size / median['ours'],
      'model_garden': batch_size / median[MG],
      'unit': 'images/s',
      'ratio': median[MG] / median['ours'],
      'notes': f'{precision}, one CPU device ({device}); global batch / median '
               f'step time over {steps} steps after {warmup} warm-up, one '
               'step per host call, ours and Model Garden alternating; ratio '
               'ours / MG (> 1: ours faster). Ours assigns anchors in the '
               'step; Model Garden gets precomputed per-anchor targets.',
      'seconds_per_step': pair(median),
      'min_s': pair({k: min(v) for k, v in times.items()}),
      'max_s': pair({k: max(v) for k, v in times.items()}),
      'cpu_seconds_per_step': pair({k: statistics.median(v)
                                    for k, v in cpu.items()}),
      'trace_s': pair({k: v[0] for k, v in compiled.items()}),
      'first_call_s': pair({k: v[1] for k, v in compiled.items()}),
      'trainable_params': pair(params),
      'last_loss': pair(losses),
      'model_id': model_id, 'image_size': image_size,
      'batch_size': batch_size, 'steps': steps, 'warmup': warmup,
      'num_classes': num_classes, 'precision': precision,
  }
  if parts is not None:
    row['parts'] = parts
  if op_seconds is not None:
    row['op_seconds'] = op_seconds
  return [row]


def _breakdown(ours, mg, images, boxes, classes, steps):
  """Rows timing the parts of one step outside the loops (no update):
  forward (training=True), forward + loss, forward + loss + gradient."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from spinenet_tf.training.optimization import l2_penalty
  task, model, _, _, labels = mg
  x = tf.constant(images)
  gt = {'boxes': tf.constant(boxes), 'classes': tf.constant(classes)}
  weight = ours.config.optimizer.l2_weight_decay

  def our_loss(x):
    outputs = ours.model(x, training=True)
    losses = ours.task.losses(ours.model, outputs, gt)
    return losses['total_loss'] + l2_penalty(
        ours.model.trainable_variables, weight)

  def mg_loss(x):
    outputs = model(x, training=True)
    return task.build_losses(outputs, labels, model.losses)[0]

  def gradient(loss_fn, variables):
    def fn(x):
      with tf.GradientTape() as tape:
        loss = loss_fn(x)
      return tape.gradient(loss, variables)
    return fn

  parts = {
      'forward': (lambda x: ours.model(x, training=True),
                  lambda x: model(x, training=True)),
      'forward + loss': (our_loss, mg_loss),
      'forward + loss + gradient': (
          gradient(our_loss, ours.model.trainable_variables),
          gradient(mg_loss, model.trainable_variables)),
  }
  seconds = {}
  for part, (fn_ours, fn_mg) in parts.items():
    fns = {'ours': tf.function(fn_ours), MG: tf.function(fn_mg)}
    for fn in fns.values():
      _timed(fn, x)
      _timed(fn, x)
    times = {'ours': [], MG: []}
    for _ in range(max(steps, 3)):
      for name, fn in fns.items():
        times[name].append(_timed(fn, x))
    median = {k: statistics.median(v) for k, v in times.items()}
    _progress(f'{part}: ours {median["ours"]:.3f} s, {MG} '
              f'{median[MG]:.3f} s')
    seconds[part] = {'ours': median['ours'], 'model_garden': median[MG]}
  return seconds


def table(rows):
  """Markdown: per row, images/s and the timings behind them."""
  lines = [
      'Training step of RetinaNet-SpineNet (ours: `Trainer` train loop; '
      'Model Garden: `RetinaNetTask.train_step`), one CPU device, '
      f'{machine_line()}. Ratio: ours / Model Garden for images/s '
      'and parameters, Model Garden / ours for seconds; above 1 is better '
      'for us (parameters: 1 = same model).',
      '',
      '| setting | measure | ours | Model Garden | ratio |',
      '|---|---|---:|---:|---:|',
  ]
  for r in rows:
    def line(measure, ours, mg, ratio, fmt='.3g'):
      ratio = '' if ratio is None else f'{ratio:.2f}'
      lines.append(f"| {r['name']} | {measure} | {ours:{fmt}} | {mg:{fmt}} "
                   f'| {ratio} |')
    line('images/s', r['ours'], r['model_garden'], r['ratio'])
    timings = [('s/step (median)', r['seconds_per_step']),
               ('s/step (min)', r['min_s']), ('s/step (max)', r['max_s']),
               ('process CPU s/step (median)', r['cpu_seconds_per_step']),
               ('trace s', r['trace_s']),
               ('first call s (graph optimisation + step)',
                r['first_call_s'])]
    timings += [(f'part: {k} s', v) for k, v in r.get('parts', {}).items()]
    for measure, v in timings:
      line(measure, v['ours'], v['model_garden'],
           v['model_garden'] / v['ours'])
    p = r['trainable_params']
    line('trainable parameters', p['ours'], p['model_garden'],
         p['ours'] / p['model_garden'], ',')
    loss = r['last_loss']
    line('loss of the last step (sanity)', loss['ours'],
         loss['model_garden'], None)
  for r in rows:
    if 'op_seconds' in r:
      lines += ['', profile.top_ops_table(
          f"{r['name']}, one step", r['op_seconds']['ours'],
          r['op_seconds']['model_garden'])]
  return '\n'.join(lines)


def define_flags():
  """The benchmark's flags (defined by `run`, not on import)."""
  flags.DEFINE_integer('image_size', 256, 'Square input size (a multiple of '
                       '128).', lower_bound=128)
  flags.DEFINE_integer('batch_size', 4, 'Global batch.', lower_bound=1)
  flags.DEFINE_integer('steps', 10, 'Timed steps.', lower_bound=1)
  flags.DEFINE_integer('warmup', 2, 'Untimed steps after the first call.',
                       lower_bound=0)
  flags.DEFINE_string('model_id', '49', "SpineNet model id ('49', '49S', "
                      '...).')
  flags.DEFINE_integer('num_classes', 91, 'Class slots, background '
                       'included.', lower_bound=2)
  flags.DEFINE_bool('quick', False, '128x128, at most 3 steps after 1 '
                    'warm-up.')
  flags.DEFINE_bool('breakdown', False, 'Also time forward, forward + loss '
                    'and forward + loss + gradient of each model.')
  flags.DEFINE_enum('precision', 'float32', ['float32', 'bfloat16'],
                    'Both sides: float32 or mixed bfloat16.')
  flags.DEFINE_bool('profile_ops', False, 'Also trace 2 steps of each with '
                    'the TF profiler and report thread seconds per step by '
                    'op type.')
  flags.DEFINE_string('output', None, 'Write the rows as JSON here.')
  flags.DEFINE_string('output_md', None, 'Write the markdown table here.')


def main(argv):
  cli.refuse_arguments(argv)
  if FLAGS.image_size % 128:
    raise cli.UserError(f'--image_size {FLAGS.image_size} must divide by '
                        '128.')
  rows = measure(FLAGS.image_size, FLAGS.batch_size, FLAGS.steps,
                 FLAGS.warmup, FLAGS.quick, FLAGS.model_id, FLAGS.num_classes,
                 FLAGS.breakdown, FLAGS.precision, FLAGS.profile_ops)
  write_report(table(rows) + '\n', {'rows': rows}, FLAGS.output_md,
               FLAGS.output)


def run():
  define_flags()
  cli.run(main, doc=__doc__)
