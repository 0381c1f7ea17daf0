"""Exported RetinaNet-SpineNet-49 vs Model Garden's: CPU latency and error.

One run, batch 1, 640x640, every function timed in the same loop, call by
call in turn, after warm-up calls; median (min-max) ms. Two scopes:
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
Error: max |output - unfolded float32 Keras output| over the raw outputs of
each of our networks on the same image.

Weights are random. Our BatchNorm statistics are randomized (gamma and
variance in [0.5, 1.5], beta and mean ~ N(0, 0.1)) and the head's output
convs get stddev 0.01, so that folding changes every conv and the outputs
vary. Model Garden's model is built from its `retinanet_spinenet_coco`
experiment config with `factory.build_retinanet`, with use_sync_bn off
(one replica: SyncBatchNormalization is not fused and would only slow it).
With random weights no score passes its 0.05 threshold, which keeps Model
Garden's detection generator at its cheapest.

  python scripts/bench_export.py --output_md export.md --output_json e.json
  python scripts/bench_export.py --quick
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
from benchmarks.report import write_report
from spinenet_tf.export.fold_batchnorm import fold_batchnorm
from spinenet_tf.export.saved_model import (ServingModule, export_saved_model,
                                            normalize)
from spinenet_tf.models.retinanet import build_retinanet

FLAGS = flags.FLAGS

SIZE = 640
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


def _variants(quick):
  """(name, dtype, XLA) of our folded network / export."""
  variants = [('float32', None, False), ('bfloat16', 'bfloat16', False)]
  if not quick:
    variants += [('float32 + XLA', None, True),
                 ('bfloat16 + XLA', 'bfloat16', True)]
  return variants


def _serving_functions(model, quick, directory):
  """{name: serving_default} of each export variant."""
  functions = {}
  for name, dtype, xla in _variants(quick):
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


def _rows(scope, times, errors, scale):
  """One row per function; speedups are Model Garden's median / this one's
  (and, for inference, Model Garden's with batched NMS / this one's)."""
  rows = []
  for name, values in times.items():
    median = statistics.median(values)
    speedups = {key: statistics.median(times[peer]) / median
                for key, peer in (('speedup_vs_model_garden', MG),
                                  ('speedup_vs_model_garden_batched_nms',
                                   MG_BATCHED)) if peer in times}
    rows.append({'scope': scope, 'name': name, 'median_ms': median,
                 'min_ms': min(values), 'max_ms': max(values),
                 'repeats': len(values), **speedups,
                 'max_abs_diff': errors.get(name),
                 'max_abs_output': scale if name in errors else None})
  return rows


def measure(quick=False, repeats=20, warmup=3):
  """Latency and error rows of both scopes (see the module doc)."""
  if quick:
    repeats, warmup = 3, 1
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(1)
  pixels = tf.constant(rng.integers(0, 256, (1, SIZE, SIZE, 3)), tf.uint8)
  images = normalize(pixels)
  ours = build_ours()
  reference = build_model_garden()

  def mg_network(x):
    features = reference.backbone(x, training=False)
    if reference.decoder is not None:
      features = reference.decoder(features, training=False)
    return reference.head(features, training=False)

  expected = tf.nest.flatten(ours(images, training=False))
  network = {MG: (tf.function(mg_network), images),
             'ours, Keras model': (
                 tf.function(lambda x: ours(x, training=False)), images)}
  errors = {}
  for name, dtype, xla in _variants(quick):
    folded = fold_batchnorm(ours, dtype)
    key = f'ours, folded {name}'
    network[key] = (tf.function(folded, jit_compile=xla), images)
    errors[key] = _difference(network[key][0](images), expected)
  rows = _rows('network', time_interleaved(network, repeats, warmup), errors,
               _max_abs(expected))
  del network
  gc.collect()

  with tempfile.TemporaryDirectory() as directory:
    batched = build_model_garden('batched')
    inference = {
        MG: (tf.function(lambda x: reference(x, training=False)), images),
        MG_BATCHED: (tf.function(lambda x: batched(x, training=False)),
                     images),
        'ours, Keras model.detect': (tf.function(ours.detect), images)}
    inference.update({name: (fn, pixels) for name, fn in
                      _serving_functions(ours, quick, directory).items()})
    rows += _rows('inference', time_interleaved(inference, repeats, warmup),
                  {}, None)
  keras.backend.clear_session()
  return rows


def table(rows):
  lines = [
      f'RetinaNet-SpineNet-49, {SIZE}x{SIZE}, batch 1, {os.cpu_count()} CPU '
      'cores; median (min-max) ms, all functions in turn in one loop. '
      'Speedup: Model Garden\'s median / this median (inference: also vs '
      'Model Garden with batched NMS). Error: max |raw output - unfolded '
      'float32 Keras output| (largest |output| in brackets).',
      '',
      '| scope | function | ms | vs Model Garden | vs MG batched NMS | '
      'error |',
      '|---|---|---|---|---|---|',
  ]
  for r in rows:
    error = ('' if r['max_abs_diff'] is None else
             f"{r['max_abs_diff']:.2g} ({r['max_abs_output']:.3g})")
    batched = r.get('speedup_vs_model_garden_batched_nms')
    lines.append(
        f"| {r['scope']} | {r['name']} | {r['median_ms']:.1f} "
        f"({r['min_ms']:.1f}-{r['max_ms']:.1f}) | "
        f"{r['speedup_vs_model_garden']:.2f} | "
        f"{'' if batched is None else f'{batched:.2f}'} | {error} |")
  return '\n'.join(lines)


def define_flags():
  """The benchmark's flags (defined by `run`, not on import)."""
  flags.DEFINE_bool('quick', False, '3 timed calls after 1 warm-up, no XLA, '
                    'no SavedModel round trip.')
  flags.DEFINE_integer('repeats', 20, 'Timed calls per function.',
                       lower_bound=1)
  flags.DEFINE_integer('warmup', 3, 'Untimed calls per function first.',
                       lower_bound=0)
  flags.DEFINE_string('output_json', None, 'Write the rows as JSON here.')
  flags.DEFINE_string('output_md', None, 'Write the markdown table here.')


def main(argv):
  cli.refuse_arguments(argv)
  rows = measure(FLAGS.quick, FLAGS.repeats, FLAGS.warmup)
  write_report(table(rows) + '\n', {'rows': rows}, FLAGS.output_md,
               FLAGS.output_json)


def run():
  define_flags()
  cli.run(main, doc=__doc__)
