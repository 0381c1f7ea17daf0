"""SpineNet and RetinaNet-SpineNet under the Keras JAX backend: images/s and
achieved TFLOP/s of the forward pass and the training step.

Runs where only JAX and Keras are installed (no TensorFlow): the accelerator
machine's path. Each measured function is compiled once with `jax.jit`
(spinenet_tf.training.jax_step); its FLOPs are what XLA's cost analysis of
the compiled program counts (1 multiply-add = 2 FLOPs); it is timed over
`steps` calls after `warmup` calls, each waited for (`block_until_ready`).
TFLOP/s = FLOPs / median seconds. `--peak` also times a bf16 matrix
multiply (N x N by N x N, default N = 8192) as the device's measured matrix
peak, and reports each row as a fraction of it.

  KERAS_BACKEND=jax python scripts/bench_jax.py --dtype bfloat16 --peak
  KERAS_BACKEND=jax python scripts/bench_jax.py --quick       # CPU smoke run

Rows: backbone forward (inference), RetinaNet forward (inference, raw
outputs, no NMS), RetinaNet training step (forward, target assignment,
focal + Huber loss, L2, gradient, SGD momentum update). Inputs: train_speed's
synthetic batch (images ~ N(0, 1), 8 random boxes per image).
"""
import math
import statistics
import sys
import time

import jax
import keras
from absl import flags

import spinenet_tf
from spinenet_tf import cli
from benchmarks.report import write_report
from benchmarks.train_speed import synthetic_batch  # numpy only
from spinenet_tf.training import jax_step

FLAGS = flags.FLAGS

NUM_CLASSES = 91
POLICIES = {'float32': 'float32', 'bfloat16': 'mixed_bfloat16'}


def compile_fn(fn, *args):
  """(compiled program of jit function `fn` for `args`, the FLOPs XLA's
  cost analysis counts in it, seconds to trace and compile)."""
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per device
    analysis = analysis[0]
  return compiled, float(analysis.get('flops', 0.0)), compile_s


def time_calls(fn, args, steps, warmup, carry_state=False):
  """Median / min / max seconds of `steps` calls after `warmup` calls, and
  the last args; with carry_state, fn returns (state, out) and the state
  goes into the next call (a training loop)."""
  def call(args):
    result = fn(*args)
    jax.block_until_ready(result)
    return (result[0], *args[1:]) if carry_state else args

  for _ in range(warmup):
    args = call(args)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    args = call(args)
    times.append(time.perf_counter() - start)
  return {'median_s': statistics.median(times), 'min_s': min(times),
          'max_s': max(times)}, args


def matmul_peak(n, steps):
  """TFLOP/s of an n x n bf16 matrix multiply (2 n**3 FLOPs)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  keys = jax.random.split(jax.random.key(0))
  a, b = (jax.random.normal(k, (n, n), jnp.bfloat16) for k in keys)
  matmul, _, _ = compile_fn(jax.jit(jnp.matmul), a, b)
  seconds, _ = time_calls(matmul, (a, b), steps, warmup=3)
  return 2 * n ** 3 / seconds['median_s'] / 1e12


def _row(name, batch_size, flops, compile_s, seconds, **extra):
  return {'name': name, 'batch_size': batch_size, 'flops': flops,
          'images_per_s': batch_size / seconds['median_s'],
          'tflops_per_s': flops / seconds['median_s'] / 1e12,
          'compile_s': compile_s, **seconds, **extra}


def measure(model_id='49', image_size=640, batch_size=8, steps=20, warmup=3,
            dtype='float32', num_convs=4, num_filters=256):
  """Rows: backbone forward, RetinaNet forward, RetinaNet training step."""
  keras.mixed_precision.set_global_policy(POLICIES[dtype])
  images, boxes, classes = synthetic_batch(batch_size, image_size,
                                           NUM_CLASSES)
  labels = {'boxes': boxes, 'classes': classes}
  model = spinenet_tf.build_retinanet(
      model_id, NUM_CLASSES, (image_size, image_size, 3),
      num_convs=num_convs, num_filters=num_filters,
      positive_threshold=0.5, negative_threshold=0.5)
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  state = jax_step.initial_state(model, optimizer)
  setting = f'{image_size}x{image_size}, batch {batch_size}, {dtype}'
  rows = []

  backbone = model.backbone
  backbone_state = (
      [v.value for v in backbone.trainable_variables],
      [v.value for v in backbone.non_trainable_variables], [])
  for name, target, fn_state in (
      (f'SpineNet-{model_id} backbone forward', backbone, backbone_state),
      (f'RetinaNet-SpineNet-{model_id} forward', model, state)):
    fn, flops, compile_s = compile_fn(jax_step.forward(target), fn_state,
                                      images)
    seconds, _ = time_calls(fn, (fn_state, images), steps, warmup)
    rows.append(_row(f'{name}, {setting}', batch_size, flops, compile_s,
                     seconds, params=int(target.count_params())))
    _progress(rows[-1])

  step = jax_step.train_step(model, optimizer, jax_step.detection_loss,
                             l2_weight_decay=4e-5)
  step, flops, compile_s = compile_fn(step, state, images, labels)
  _, first_losses = step(state, images, labels)
  seconds, (state, _, _) = time_calls(step, (state, images, labels), steps,
                                      warmup, carry_state=True)
  _, last_losses = step(state, images, labels)
  losses = {'first': float(first_losses['loss']),
            'last': float(last_losses['loss'])}
  if not all(map(math.isfinite, losses.values())):
    raise FloatingPointError(f'non-finite training loss: {losses}')
  rows.append(_row(f'RetinaNet-SpineNet-{model_id} training step, {setting}',
                   batch_size, flops, compile_s, seconds, loss=losses,
                   params=int(model.count_params())))
  _progress(rows[-1])
  return rows


def _progress(row):
  print(f"{row['name']}: {row['images_per_s']:.1f} images/s, "
        f"{row['tflops_per_s']:.2f} TFLOP/s", file=sys.stderr, flush=True)


def table(rows, device, peak):
  lines = [
      f'Keras {keras.__version__} JAX backend (jax {jax.__version__}), '
      f'device: {device}. FLOPs: XLA cost analysis of the compiled program '
      '(1 multiply-add = 2 FLOPs); time: median of timed calls, each '
      'waited for.' + (f' Peak: bf16 matrix multiply, {peak:.1f} TFLOP/s '
                       'measured.' if peak else ''),
      '',
      '| measurement | images/s | GFLOP / image | TFLOP/s | of peak | '
      'median ms | compile s |',
      '|---|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    share = f"{r['tflops_per_s'] / peak:.1%}" if peak else ''
    lines.append(
        f"| {r['name']} | {r['images_per_s']:.1f} | "
        f"{r['flops'] / r['batch_size'] / 1e9:.1f} | "
        f"{r['tflops_per_s']:.2f} | {share} | {1000 * r['median_s']:.1f} | "
        f"{r['compile_s']:.1f} |")
  return '\n'.join(lines)


def define_flags():
  """The benchmark's flags (defined by `run`, not on import)."""
  flags.DEFINE_string('model_id', '49', 'SpineNet model id.')
  flags.DEFINE_integer('image_size', 640, 'Square input size (a multiple of '
                       '128).', lower_bound=128)
  flags.DEFINE_integer('batch_size', 8, 'Images per step.', lower_bound=1)
  flags.DEFINE_integer('steps', 20, 'Timed calls per row.', lower_bound=1)
  flags.DEFINE_integer('warmup', 3, 'Untimed calls after compiling.',
                       lower_bound=0)
  flags.DEFINE_enum('dtype', 'float32', sorted(POLICIES), 'float32 or '
                    'mixed bfloat16.')
  flags.DEFINE_bool('peak', False, 'Also measure the bf16 matrix-multiply '
                    'peak.')
  flags.DEFINE_integer('peak_size', 8192, 'N of the N x N matrices of '
                       '--peak.', lower_bound=1)
  flags.DEFINE_bool('quick', False, 'Mobile-49XS at 128, batch 2, a 1x32 '
                    'head, 2 steps: a CPU smoke run.')
  flags.DEFINE_string('output_md', None, 'Write the markdown table here.')
  flags.DEFINE_string('output_json', None, 'Write the rows as JSON here.')


def main(argv):
  cli.refuse_arguments(argv)
  if keras.backend.backend() != 'jax':
    raise cli.UserError(f'KERAS_BACKEND is {keras.backend.backend()!r}; this '
                        'benchmark needs KERAS_BACKEND=jax.')
  model_id, image_size, batch_size = (FLAGS.model_id, FLAGS.image_size,
                                      FLAGS.batch_size)
  steps, warmup, head = FLAGS.steps, FLAGS.warmup, {}
  if image_size % 128:
    raise cli.UserError(f'--image_size {image_size} must divide by 128.')
  if FLAGS.quick:
    model_id, image_size, batch_size, steps, warmup = 'mobile-49XS', 128, 2, 2, 0
    head = {'num_convs': 1, 'num_filters': 32}
  device = jax.devices()[0]
  device_name = f'{device.platform}: {device.device_kind}'
  peak = matmul_peak(FLAGS.peak_size, steps) if FLAGS.peak else None
  rows = measure(model_id, image_size, batch_size, steps, warmup, FLAGS.dtype,
                 **head)
  write_report(table(rows, device_name, peak) + '\n',
               {'device': device_name, 'peak_tflops_per_s': peak,
                'rows': rows}, FLAGS.output_md, FLAGS.output_json)


def run():
  define_flags()
  cli.run(main, doc=__doc__)
