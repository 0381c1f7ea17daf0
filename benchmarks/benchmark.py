"""Every measurement of spinenet_tf against Model Garden, in one run.

Sections (--sections, all by default), each measured by the same code for
both sides:
  backbone  params and FLOPs of SpineNet variants (`count_params()`; the TF
            profiler's `float_operation()` on the frozen inference graph of
            a [1, size, size, 3] input, 1 multiply-add = 2 FLOPs) and CPU
            latency of the backbone (median of timed `tf.function` calls,
            ours and the reference alternating call by call);
  export    RetinaNet-SpineNet-49 at 640: the network and full inference,
            our exports (BatchNorm folded, float32 / bfloat16) vs Model
            Garden's model, and serving throughput at batch 8
            (export_speed);
  pipeline  detection input pipeline images/s (input_pipeline);
  training  RetinaNet-SpineNet-49 training step images/s at each of
            --training_sizes and --training_precisions (train_speed);
  conversion
            COCO-format JSON + 640x480 pictures -> TFRecords, images/s
            with and without masks, 2 processes (coco_conversion).
The report leads with one summary table (ours, Model Garden, ratio; ratio >
1 means ours is better), then each section's detail table; --profile_ops
adds each side's top TF op types (inference and each training setting).

  python scripts/benchmark.py --output_md bench.md --output_json bench.json
  python scripts/benchmark.py --quick
  python scripts/benchmark.py --sections backbone --variants 49,mobile-49
  python scripts/benchmark.py --sections export,training --profile_ops
"""
import gc
import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
import tf_keras
from absl import flags, logging

import spinenet_tf
from spinenet_tf import cli
from benchmarks import coco_conversion, export_speed, input_pipeline
from benchmarks import train_speed
from benchmarks.model_garden import build_reference
from benchmarks.report import machine_line, write_report
from spinenet_tf.flops import count_flops

# Variant -> input size (backbone, levels 3-7).
VARIANTS = {'49S': 640, '49': 640, '96': 640, '143': 640, '143L': 640,
            '190': 640, 'mobile-49': 384, 'mobile-49S': 384,
            'mobile-49XS': 384}
QUICK_VARIANTS = ('49S', '49', 'mobile-49XS')
CONV_OPS = ('Conv2D', 'DepthwiseConv2dNative', 'MatMul')
SECTIONS = ('backbone', 'export', 'pipeline', 'training', 'conversion')
# Timed training steps per side and setting (the ratio of medians moves
# +-3% between runs of 10 on this shared 2-core machine).
TRAINING_STEPS = 20

FLAGS = flags.FLAGS


def build_ours(model_id, size):
  return spinenet_tf.build_backbone(model_id, (size, size, 3))


BUILDERS = {'ours': build_ours, 'reference': build_reference}


def inference_fn(model):
  return tf.function(lambda x: model(x, training=False))


def release():
  keras.backend.clear_session()
  tf_keras.backend.clear_session()
  gc.collect()


def measure_variant(model_id):
  """Params and FLOPs of ours and the reference, one model at a time."""
  size = VARIANTS[model_id]
  row = {'variant': model_id, 'input': size}
  for side, build in BUILDERS.items():
    start = time.time()
    model = build(model_id, size)
    by_type = count_flops(model, (size, size, 3))
    row[side] = {'params': int(model.count_params()),
                 'flops': sum(by_type.values()),
                 'conv_flops': sum(by_type.get(t, 0) for t in CONV_OPS),
                 'flops_by_op': by_type}
    del model
    release()
    logging.info('%s %s: %.1f s', model_id, side, time.time() - start)
  return row


def measure_latency(model_id, repeats, warmup):
  """Median ms per batch-1 call; ours and the reference alternate calls."""
  size = VARIANTS[model_id]
  image = tf.constant(np.random.default_rng(0).uniform(
      0, 1, (1, size, size, 3)).astype('float32'))
  fns = {side: inference_fn(build(model_id, size))
         for side, build in BUILDERS.items()}
  for _ in range(warmup):
    for fn in fns.values():
      _run(fn, image)
  times = {side: [] for side in fns}
  for _ in range(repeats):
    for side, fn in fns.items():
      times[side].append(_run(fn, image))
  del fns
  release()
  result = {'variant': model_id, 'input': size, 'batch': 1,
            'repeats': repeats, 'warmup': warmup}
  for side, values in times.items():
    result[side] = {'median_ms': statistics.median(values),
                    'min_ms': min(values), 'max_ms': max(values)}
  result['ratio'] = result['ours']['median_ms'] / result['reference']['median_ms']
  return result


def _run(fn, image):
  """Milliseconds for one call, outputs copied to the host."""
  start = time.perf_counter()
  outputs = fn(image)
  for value in outputs.values():
    value.numpy()
  return 1000 * (time.perf_counter() - start)


def _g(flops):
  return f'{flops / 1e9:.2f}'


def counts_table(rows):
  lines = [
      'Backbone, levels 3-7, batch 1, float32. GFLOPs = 1e9 FLOPs counted by '
      'the TF profiler (`float_operation()`) on the frozen inference graph; '
      '1 multiply-add = 2 FLOPs. "conv" = Conv2D + DepthwiseConv2dNative + '
      'MatMul only.',
      '',
      '| variant | input | params ours | params Model Garden | GFLOPs ours | '
      'GFLOPs Model Garden | ours / MG | conv GFLOPs ours | '
      'conv GFLOPs Model Garden |',
      '|---|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    ours, ref = r['ours'], r['reference']
    lines.append(
        f"| {r['variant']} | {r['input']} | {ours['params']:,} | "
        f"{ref['params']:,} | {_g(ours['flops'])} | {_g(ref['flops'])} | "
        f"{ours['flops'] / ref['flops']:.4f} | {_g(ours['conv_flops'])} | "
        f"{_g(ref['conv_flops'])} |")
  return '\n'.join(lines)


def latency_table(rows):
  lines = [
      f'CPU latency, batch 1, float32, `tf.function` (training=False), '
      f'{machine_line()}; median (min-max) ms of timed calls, ours '
      'and Model Garden alternating call by call after warm-up calls.',
      '',
      '| variant | input | repeats | ours ms | Model Garden ms | ours / MG |',
      '|---|---|---|---|---|---|',
  ]
  for r in rows:
    cells = [f"{r[s]['median_ms']:.1f} ({r[s]['min_ms']:.1f}-"
             f"{r[s]['max_ms']:.1f})" for s in ('ours', 'reference')]
    lines.append(f"| {r['variant']} | {r['input']} | {r['repeats']} | "
                 f"{cells[0]} | {cells[1]} | {r['ratio']:.2f} |")
  return '\n'.join(lines)


RATIO_IS = {'lower': 'MG / ours', 'higher': 'ours / MG',
            'equal': 'ours / MG'}


def summary_row(measurement, unit, ours, model_garden, better):
  """A summary row; ratio > 1 when ours is better: Model Garden / ours
  where lower is better (ms, FLOPs), else ours / Model Garden (images/s;
  'equal': params, 1 = equal)."""
  ratio = (model_garden / ours if better == 'lower' else ours / model_garden)
  return {'measurement': measurement, 'unit': unit, 'ours': ours,
          'model_garden': model_garden, 'ratio': ratio, 'better': better}


def backbone_summary(counts, latency):
  rows = []
  for r in counts:
    # Parameters must be equal; fewer conv FLOPs (same function) is better.
    for key, unit, better in (('params', 'params', 'equal'),
                              ('conv_flops', 'conv GFLOPs', 'lower')):
      scale = 1 if key == 'params' else 1e-9
      rows.append(summary_row(f"SpineNet-{r['variant']} {key.replace('_', ' ')} "
                           f"at {r['input']}", unit, r['ours'][key] * scale,
                           r['reference'][key] * scale, better))
  for r in latency:
    rows.append(summary_row(
        f"SpineNet-{r['variant']} backbone latency, {r['input']}, batch 1, "
        'float32', 'ms', r['ours']['median_ms'], r['reference']['median_ms'],
        'lower'))
  return rows


def export_summary(rows):
  """Our networks vs Model Garden's network (ms); our inference functions
  vs Model Garden's with batched NMS, its fastest on CPU (ms, and images/s
  at the throughput batch)."""
  peers = {(r['scope'], r['name']): r for r in rows
           if r['name'] in (export_speed.MG, export_speed.MG_BATCHED)}
  summary = []
  for r in rows:
    if not r['name'].startswith('ours'):
      continue
    if r['scope'] == 'network':
      peer = peers[r['scope'], export_speed.MG]
    else:
      peer = peers[r['scope'], export_speed.MG_BATCHED]
    if r['batch'] == 1:
      summary.append(summary_row(f"RetinaNet-49 {r['scope']} at 640: "
                              f"{r['name']}", 'ms', r['median_ms'],
                              peer['median_ms'], 'lower'))
    else:
      summary.append(summary_row(f"RetinaNet-49 serving at 640, batch "
                              f"{r['batch']}: {r['name']}", 'images/s',
                              r['images_per_s'], peer['images_per_s'],
                              'higher'))
  return summary


def pipeline_summary(rows):
  by_name = {r['pipeline']: r['images_per_s'] for r in rows}
  return [summary_row('Detection input pipeline, 640, batch 8', 'images/s',
                   by_name['spinenet_tf build_detection_dataset'],
                   by_name['Model Garden retinanet_input.Parser'], 'higher')]


def training_summary(rows):
  return [summary_row(r['name'], r['unit'], r['ours'], r['model_garden'],
                   'higher') for r in rows]


def conversion_summary(rows):
  by_key = {(r['converter'], r['masks']): r['images_per_s'] for r in rows}
  return [summary_row(f"COCO JSON -> TFRecord, {'with' if masks else 'no'} "
                   f"masks, {rows[0]['num_workers']} processes", 'images/s',
                   by_key['spinenet_tf convert_coco', masks],
                   by_key['Model Garden create_coco_tf_record', masks],
                   'higher') for masks in (False, True)]


def summary_table(rows):
  lines = [
      f'All on this machine ({machine_line()}), one run. The ratio is '
      'what its column says (MG: Model Garden): above 1 is better for us; '
      'for parameters 1 = equal.',
      '',
      '| measurement | unit | ours | Model Garden | ratio | ratio is |',
      '|---|---|---:|---:|---:|---|',
  ]
  for r in rows:
    cells = [f'{v:,.0f}' if r['unit'] == 'params' else f'{v:.2f}'
             for v in (r['ours'], r['model_garden'])]
    digits = 4 if r['better'] == 'equal' else 2
    lines.append(f"| {r['measurement']} | {r['unit']} | {cells[0]} | "
                 f"{cells[1]} | {r['ratio']:.{digits}f} | "
                 f"{RATIO_IS[r['better']]} |")
  return '\n'.join(lines)


def define_flags():
  """The benchmark's flags (defined by `run`, not on import)."""
  flags.DEFINE_list('variants', None, 'Variants to count (default: all 9; '
                    f'--quick: {",".join(QUICK_VARIANTS)}).')
  flags.DEFINE_list('latency_variants', ['49'], 'Variants to time.')
  flags.DEFINE_integer('repeats', 20, 'Timed calls per model.')
  flags.DEFINE_integer('warmup', 3, 'Untimed calls per model before timing.')
  flags.DEFINE_bool('quick', False, 'A short run: fewer variants, repeats '
                    'and images in every section.')
  flags.DEFINE_list('sections', list(SECTIONS),
                    'What to measure: backbone (params, FLOPs, latency), '
                    'export (exported RetinaNet inference), pipeline '
                    '(detection input images/s), training (train step '
                    'images/s), conversion (COCO JSON -> TFRecord '
                    'images/s).')
  flags.DEFINE_list('training_sizes', ['128', '256'], 'Training section: '
                    'square input sizes (multiples of 128; --quick caps '
                    'them at 128).')
  flags.DEFINE_list('training_precisions', ['float32', 'bfloat16'],
                    'Training section: float32 and/or bfloat16.')
  flags.DEFINE_bool('profile_ops', False, 'Also list the top TF op types of '
                    'each side: one image of exported inference, one '
                    'training step per setting (TF profiler).')
  flags.DEFINE_string('output_json', None, 'Write the results as JSON here.')
  flags.DEFINE_string('output_md', None, 'Write the markdown tables here.')


def main(argv):
  cli.refuse_arguments(argv)
  variants = FLAGS.variants or (QUICK_VARIANTS if FLAGS.quick else VARIANTS)
  repeats, warmup = ((5, 1) if FLAGS.quick else (FLAGS.repeats, FLAGS.warmup))
  unknown = sorted({*variants, *FLAGS.latency_variants} - set(VARIANTS))
  if unknown:
    raise cli.UserError(f'--variants / --latency_variants: unknown {unknown}; '
                        f'choose from {", ".join(VARIANTS)}.')
  bad = [s for s in FLAGS.training_sizes
         if not s.isdigit() or int(s) < 128 or int(s) % 128]
  if bad:
    raise cli.UserError(f'--training_sizes: {bad} are not multiples of 128.')
  unknown = sorted(set(FLAGS.training_precisions) - {'float32', 'bfloat16'})
  if unknown:
    raise cli.UserError(f'--training_precisions: unknown {unknown}; choose '
                        'from float32, bfloat16.')
  unknown = sorted(set(FLAGS.sections) - set(SECTIONS))
  if unknown:
    raise cli.UserError(f'--sections: unknown {unknown}; choose from '
                        f'{", ".join(SECTIONS)}.')
  results, tables, summary = {}, [], []
  if 'backbone' in FLAGS.sections:
    results['counts'] = [measure_variant(v) for v in variants]
    results['latency'] = [measure_latency(v, repeats, warmup)
                          for v in FLAGS.latency_variants]
    summary += backbone_summary(results['counts'], results['latency'])
    tables += [counts_table(results['counts']),
               latency_table(results['latency'])]
  if 'export' in FLAGS.sections:
    results['export'], profile_result = export_speed.measure(
        quick=FLAGS.quick, profile_ops=FLAGS.profile_ops)
    results['export_profile'] = profile_result
    summary += export_summary(results['export'])
    tables.append(export_speed.table(results['export'], profile_result))
  if 'pipeline' in FLAGS.sections:
    rows, stages = input_pipeline.measure(quick=FLAGS.quick)
    results['pipeline'], results['pipeline_stages'] = rows, stages
    summary += pipeline_summary(rows)
    tables.append('Detection input pipeline, training mode at 640, batch 8, '
                  f"best of {rows[0]['rounds']} rounds of "
                  f"{rows[0]['num_images']} images:\n\n"
                  + input_pipeline.tables(rows, stages))
  if 'training' in FLAGS.sections:
    results['training'] = [
        row for size in FLAGS.training_sizes
        for precision in FLAGS.training_precisions
        for row in train_speed.measure(
            image_size=int(size), steps=TRAINING_STEPS, quick=FLAGS.quick,
            precision=precision, profile_ops=FLAGS.profile_ops)]
    summary += training_summary(results['training'])
    tables.append(train_speed.table(results['training']))
  if 'conversion' in FLAGS.sections:
    results['conversion'] = coco_conversion.measure(quick=FLAGS.quick)
    summary += conversion_summary(results['conversion'])
    tables.append(coco_conversion.table(results['conversion']))
  results['summary'] = summary
  markdown = '\n\n'.join([summary_table(summary), *tables]) + '\n'
  write_report(markdown, results, FLAGS.output_md, FLAGS.output_json)


def run():
  define_flags()
  cli.run(main, doc=__doc__)
