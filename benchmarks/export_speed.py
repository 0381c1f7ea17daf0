"""Exported RetinaNet-SpineNet-49 vs Model Garden's: CPU latency and error.

One run, 640x640, the functions of a scope timed in the same loop, call by
call in turn, after warm-up calls; median (min-max) ms. Four scopes:
  network    normalised float32 image -> raw class and box outputs: Model
             Garden's backbone + head; our Keras model; our BatchNorm-folded
             network in float32 / bfloat16, with and without XLA.
  inference  image -> detections: Model Garden's inference call
             (`model(images, training=False)`, its detection generator
             included: NMS 'v2' as configured, and 'batched', its fastest on
             CPU) on the normalised image; our `model.detect`; our
             SavedModel's serving_default on the uint8 image (normalising,
             NMS and box mapping included), saved and loaded back with
             `tf.saved_model.load` (--quick: the serving module in process,
             no XLA rows).
  inference, 3500 candidates
             Model Garden's batched-NMS inference and our float32 export
             with a detection load: each side's class bias shifted so that
             3,500 (anchor, class) pairs of the image score above 0.05
             (spread over the image, as a trained detector's are not), so
             that NMS has work to do.
  batch 8    serving throughput: Model Garden's batched-NMS inference and
             our exports on 8 images per call; images/s (detection load
             as in the scope above).
The loaded and batch 8 scopes leave out the bfloat16 + XLA export: on
this CPU it measured ~5x slower than bfloat16 without XLA (WORKSPACE).
With --profile_ops, one image with the detection load through our float32
export and through Model Garden's batched-NMS inference is traced with the
TF profiler and each side's top op types are listed (benchmarks/profile.py).
Error: max |output - unfolded float32 Keras output| over the raw outputs of
each of our networks on the same image.

Weights are random. Our BatchNorm statistics are randomized (gamma and
variance in [0.5, 1.5], beta and mean ~ N(0, 0.1)) and the head's output
convs get stddev 0.01, so that folding changes every conv and the outputs
vary. Model Garden's model is built from its `retinanet_spinenet_coco`
experiment config with `factory.build_retinanet`, with use_sync_bn off
(one replica: SyncBatchNormalization is not fused and would only slow it).
With these random weights no score passes the 0.05 threshold in the
network and inference scopes, which keeps both detection generators at
their cheapest; the loaded scope below gives them work.

  python scripts/bench_export.py --output_md export.md --output_json e.json
  python scripts/bench_export.py --quick
  python scripts/bench_export.py --quick --profile_ops
"""
import gc
import os
import statistics
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
import tf_keras
from absl import flags
from official.core import exp_factory
from official.vision.modeling import factory

from spinenet_tf import cli
from benchmarks import profile
from benchmarks.report import machine_line, write_report
from spinenet_tf.export.fold_batchnorm import fold_batchnorm
from spinenet_tf.export.saved_model import (ServingModule, export_saved_model,
                                            normalize)
from spinenet_tf.models.retinanet import build_retinanet

FLAGS = flags.FLAGS

SIZE = 640
THROUGHPUT_BATCH = 8
LOADED_CANDIDATES = 3500  # pairs above the score threshold, 'loaded' scope
MG = 'Model Garden'
MG_BATCHED = 'Model Garden, batched NMS'


def build_ours():
  model = build_retinanet('49', num_classes=91, input_shape=(SIZE, SIZE, 3))
  rng = np.random.default_rng(0)
  for v in model.weights:
    if 'moving_variance' in v.path or 'gamma' in v.path:
      v.assign(rng.uniform(0.5, 1.5, v.shape))
    elif 'moving_mean' in v.path or 'beta' in v.path:
      v.assign(rng.normal(0.0, 0.1, v.shape))
  head = model.head
  for conv in (*head.class_convs, *head.box_convs, head.class_logits,
               head.box_deltas):
    fan_in = np.prod(conv.kernel.shape[:3])
    conv.kernel.assign(rng.normal(0.0, fan_in**-0.5, conv.kernel.shape))
  return model


def build_model_garden(nms_version=None):
  config = exp_factory.get_exp_config('retinanet_spinenet_coco').task.model
  config.norm_activation.use_sync_bn = False
  if nms_version:
    config.detection_generator.nms_version = nms_version
  return factory.build_retinanet(
      input_specs=tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3]),
      model_config=config)


def _progress(message):
  print(message, file=sys.stderr, flush=True)


def _call_ms(fn, x):
  start = time.perf_counter()
  for value in tf.nest.flatten(fn(x)):
    value.numpy()
  return 1000 * (time.perf_counter() - start)


def time_interleaved(fns, repeats, warmup):
  """{name: [ms, ...]}; fns is {name: (callable, input)}."""
  for name, (fn, x) in fns.items():
    start = time.time()
    for _ in range(warmup):
      _call_ms(fn, x)
    _progress(f'warm-up {name}: {time.time() - start:.1f} s')
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, (fn, x) in fns.items():
      times[name].append(_call_ms(fn, x))
  return times


def _max_abs(tensors):
  return max(float(tf.reduce_max(tf.abs(tf.cast(t, tf.float32))))
             for t in tf.nest.flatten(tensors))


def _difference(actual, expected):
  pairs = zip(tf.nest.flatten(actual), tf.nest.flatten(expected))
  return max(float(tf.reduce_max(tf.abs(tf.cast(a, tf.float32) - e)))
             for a, e in pairs)


def _variants(quick, loaded=False):
  """(name, dtype, XLA) of our folded network / export (`loaded`: those of
  the loaded and batch 8 scopes)."""
  variants = [('float32', None, False), ('bfloat16', 'bfloat16', False)]
  if not quick:
    variants.append(('float32 + XLA', None, True))
    if not loaded:
      variants.append(('bfloat16 + XLA', 'bfloat16', True))
  return variants


def _serving_functions(model, quick, directory, variants=None):
  """{name: serving_default} of each export variant (default: all)."""
  functions = {}
  for name, dtype, xla in variants or _variants(quick):
    start = time.time()
    if quick:
      functions[f'ours, serving module {name}'] = ServingModule(
          model, dtype=dtype).serve_images
      continue
    path = os.path.join(directory, name.replace(' + ', '_'))
    export_saved_model(model, path, dtype=dtype, jit_compile=xla)
    functions[f'ours, SavedModel {name}'] = tf.saved_model.load(
        path).signatures['serving_default']
    _progress(f'export + load {name}: {time.time() - start:.1f} s')
  return functions


def _load_candidates(bias, class_outputs, count=LOADED_CANDIDATES,
                     score_threshold=0.05, num_classes=91):
  """Adds to the class `bias` variable what makes `count` (anchor, class)
  pairs of this image's `class_outputs` ({level: [1, H, W, A * C]} or a
  list of them, background slot 0 left out) score above the threshold."""
  logits = np.concatenate([np.reshape(np.asarray(t), [-1, num_classes])[:, 1:]
                           .ravel() for t in tf.nest.flatten(class_outputs)])
  kth_largest = np.partition(logits, -count)[-count]
  threshold = np.log(score_threshold / (1 - score_threshold))
  # Half-way to the next logit down, so that exactly `count` pass.
  below = np.partition(logits, -count - 1)[-count - 1]
  bias.assign_add(np.full(bias.shape, threshold - (kth_largest + below) / 2,
                          np.float32))


def _rows(scope, times, errors, scale, batch=1):
  """One row per function; speedups are Model Garden's median / this one's
  (and, for inference, Model Garden's with batched NMS / this one's)."""
  rows = []
  for name, values in times.items():
    median = statistics.median(values)
    throughput = {'batch': batch, 'images_per_s': 1000 * batch / median}
    speedups = {key: statistics.median(times[peer]) / median
                for key, peer in (('speedup_vs_model_garden', MG),
                                  ('speedup_vs_model_garden_batched_nms',
                                   MG_BATCHED)) if peer in times}
    rows.append({'scope': scope, 'name': name, 'median_ms': median,
                 'min_ms': min(values), 'max_ms': max(values),
                 'repeats': len(values), **throughput, **speedups,
                 'max_abs_diff': errors.get(name),
                 'max_abs_output': scale if name in errors else None})
  return rows


def measure(quick=False, repeats=20, warmup=3, profile_ops=False,
            batch=THROUGHPUT_BATCH):
  """Rows of the four scopes (see the module doc) and, with
  `profile_ops`, {'ours': op seconds, 'model_garden': op seconds} of our
  float32 export and Model Garden's batched-NMS inference on one image
  with the detection load."""
  if quick:
    repeats, warmup = 3, 1
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(1)
  pixels = tf.constant(rng.integers(0, 256, (batch, SIZE, SIZE, 3)),
                       tf.uint8)
  images = normalize(pixels)
  pixels_1, images_1 = pixels[:1], images[:1]
  ours = build_ours()
  reference = build_model_garden()

  def mg_network(x):
    features = reference.backbone(x, training=False)
    if reference.decoder is not None:
      features = reference.decoder(features, training=False)
    return reference.head(features, training=False)

  expected = tf.nest.flatten(ours(images_1, training=False))
  network = {MG: (tf.function(mg_network), images_1),
             'ours, Keras model': (
                 tf.function(lambda x: ours(x, training=False)), images_1)}
  errors = {}
  for name, dtype, xla in _variants(quick):
    folded = fold_batchnorm(ours, dtype)
    key = f'ours, folded {name}'
    network[key] = (tf.function(folded, jit_compile=xla), images_1)
    errors[key] = _difference(network[key][0](images_1), expected)
  rows = _rows('network', time_interleaved(network, repeats, warmup), errors,
               _max_abs(expected))
  del network
  gc.collect()

  profile_result = None
  with tempfile.TemporaryDirectory() as directory:
    batched = build_model_garden('batched')
    mg_inference = tf.function(lambda x: reference(x, training=False))
    mg_batched = tf.function(lambda x: batched(x, training=False))
    serving = _serving_functions(ours, quick, directory)
    inference = {MG: (mg_inference, images_1),
                 MG_BATCHED: (mg_batched, images_1),
                 'ours, Keras model.detect': (tf.function(ours.detect),
                                              images_1)}
    inference.update({name: (fn, pixels_1) for name, fn in serving.items()})
    rows += _rows('inference', time_interleaved(inference, repeats, warmup),
                  {}, None)
    # The same again with a detection load: both class biases shifted so
    # that LOADED_CANDIDATES (anchor, class) pairs pass the score threshold.
    _load_candidates(ours.head.class_logits.bias,
                     ours(images_1, training=False)['class_outputs'])
    _load_candidates(batched.head._classifier.bias,  # pylint: disable=protected-access
                     batched.head(batched.backbone(images_1))[0])
    serving = _serving_functions(ours, quick,
                                 os.path.join(directory, 'loaded'),
                                 _variants(quick, loaded=True))
    loaded = {MG_BATCHED: (mg_batched, images_1)}
    loaded.update({name: (fn, pixels_1) for name, fn in serving.items()})
    rows += _rows(f'inference, {LOADED_CANDIDATES} candidates',
                  time_interleaved(loaded, repeats, warmup), {}, None)
    if profile_ops:
      float32 = next(fn for name, fn in serving.items()
                     if name.endswith(' float32'))
      profile_result = {
          'ours': profile.op_seconds(lambda: float32(pixels_1)),
          'model_garden': profile.op_seconds(lambda: mg_batched(images_1))}
    throughput = {MG_BATCHED: (mg_batched, images)}
    throughput.update({name: (fn, pixels) for name, fn in serving.items()})
    rows += _rows(f'batch {batch}', time_interleaved(
        throughput, max(2, repeats // 4), min(warmup, 1)), {}, None, batch)
  keras.backend.clear_session()
  return rows, profile_result


def table(rows, profile_result=None):
  lines = [
      f'RetinaNet-SpineNet-49, {SIZE}x{SIZE}, {machine_line()}; '
      'median (min-max) ms per call, all functions of a scope in turn in '
      'one loop; network and inference: batch 1. Speedup: Model Garden\'s '
      'median / this median (inference and batch: also vs Model Garden '
      'with batched NMS). Error: max |raw output - unfolded float32 Keras '
      'output| (largest |output| in brackets).',
      '',
      '| scope | function | ms | images/s | vs Model Garden | '
      'vs MG batched NMS | error |',
      '|---|---|---|---:|---|---|---|',
  ]
  for r in rows:
    error = ('' if r['max_abs_diff'] is None else
             f"{r['max_abs_diff']:.2g} ({r['max_abs_output']:.3g})")
    speedups = [r.get(key) for key in ('speedup_vs_model_garden',
                                       'speedup_vs_model_garden_batched_nms')]
    cells = ['' if value is None else f'{value:.2f}' for value in speedups]
    lines.append(
        f"| {r['scope']} | {r['name']} | {r['median_ms']:.1f} "
        f"({r['min_ms']:.1f}-{r['max_ms']:.1f}) | {r['images_per_s']:.2f} | "
        f"{cells[0]} | {cells[1]} | {error} |")
  if profile_result:
    lines += ['', profile.top_ops_table(
        'Inference, one image, detection load (ours: float32 export; Model '
        'Garden: batched NMS)', profile_result['ours'],
        profile_result['model_garden'])]
  return '\n'.join(lines)


def define_flags():
  """The benchmark's flags (defined by `run`, not on import)."""
  flags.DEFINE_bool('quick', False, '3 timed calls after 1 warm-up, no XLA, '
                    'no SavedModel round trip.')
  flags.DEFINE_integer('repeats', 20, 'Timed calls per function.',
                       lower_bound=1)
  flags.DEFINE_integer('warmup', 3, 'Untimed calls per function first.',
                       lower_bound=0)
  flags.DEFINE_bool('profile_ops', False, 'Also trace one image (detection '
                    'load) through our float32 export and Model Garden\'s '
                    'batched-NMS inference with the TF profiler and list '
                    'the top op types of each.')
  flags.DEFINE_string('output_json', None, 'Write the rows as JSON here.')
  flags.DEFINE_string('output_md', None, 'Write the markdown table here.')


def main(argv):
  cli.refuse_arguments(argv)
  rows, profile_result = measure(FLAGS.quick, FLAGS.repeats, FLAGS.warmup,
                                 FLAGS.profile_ops)
  write_report(table(rows, profile_result) + '\n',
               {'rows': rows, 'profile': profile_result}, FLAGS.output_md,
               FLAGS.output_json)


def run():
  define_flags()
  cli.run(main, doc=__doc__)
