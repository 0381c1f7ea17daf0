"""The paper's permutation study, rerun: RetinaNet with (a) ResNet-50-FPN,
(c) R0-SP53 and (d) SpineNet-49 at the search's proxy scale, same data and
budget, several seeds each.

    study = Study(output_dir, architectures='acd', seeds=3)
    study.run()                  # trains what is not finished yet
    rows = study.summary()       # one row per architecture

Every run is a training of the project's trainer in
`output_dir/runs/<key>_seed<s>/` (checkpoints, summaries), then one COCO
evaluation on the held-out split; `result.json` there marks it finished.
A run killed midway resumes from its last checkpoint; a finished run is
never retrained. Parameters and FLOPs (`flops.count_flops`, one image) are
counted once per architecture. `write_report` writes results.csv (one row
per run), summary.csv, summary.md and ap_vs_flops.png.
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
import statistics

import tensorflow as tf

from spinenet_tf import checks, configs, results
from spinenet_tf.io_utils import atomic_write
from spinenet_tf.search import proxy
from spinenet_tf.training import config as config_lib

PROXY_CONFIG = configs.path('permutation_study_proxy')
# The search's proxy scale: widths x0.25, resample alpha 0.25, 64 channels
# into the head (SpineNet endpoints, the FPN).
_SPINENET_PROXY = {'filter_size_scale': 0.25, 'resample_alpha': 0.25,
                   'endpoints_num_filters': 64}


@dataclasses.dataclass(frozen=True)
class Architecture:
  name: str
  model: dict  # model section keys over the proxy config's


ARCHITECTURES = {
    'a': Architecture('R50-FPN', {
        'backbone': 'resnet50', 'decoder': 'fpn',
        'backbone_kwargs': {'depth_multiplier': 0.25},
        'decoder_kwargs': {'num_filters': 64}}),
    'c': Architecture('R0-SP53', {'backbone': 'R0-SP53',
                                  'backbone_kwargs': _SPINENET_PROXY}),
    'd': Architecture('SpineNet-49', {'backbone': '49',
                                      'backbone_kwargs': _SPINENET_PROXY}),
}
# A run small enough for a test: 128 px, 2 steps, 8 evaluation images.
QUICK_OVERRIDES = (
    'model.input_size=128,train_data.global_batch_size=2,'
    'train_data.synthetic_num_images=8,eval_data.global_batch_size=4,'
    'eval_data.synthetic_num_images=8,trainer.train_steps=2,'
    'trainer.steps_per_loop=1,trainer.checkpoint_interval=2,'
    'schedule.warmup_steps=1')
METRICS = ('AP', 'AP50', 'APs', 'APm', 'APl')
RESULT_FILE = 'result.json'


def _check_architectures(keys):
  unknown = sorted(set(keys) - set(ARCHITECTURES))
  if unknown or not keys:
    raise ValueError(f'architectures must be letters among '
                     f'{sorted(ARCHITECTURES)} ' + ', '.join(
                         f'({k}) {a.name}' for k, a in ARCHITECTURES.items())
                     + f', got {"".join(keys)!r}.')
  return list(dict.fromkeys(keys))


def _median_images_per_second(log_dir):
  """Median of the trainer's per-loop 'images/s' summaries, the first loop
  (tracing) left out when there are more."""
  values = []
  for path in sorted(tf.io.gfile.glob(os.path.join(log_dir, 'events.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'images/s':
          values.append((event.step, float(tf.make_ndarray(value.tensor))))
  values = [v for _, v in sorted(values)]
  return statistics.median(values[1:] or values) if values else float('nan')


class Study:
  """The runs of a study in `output_dir`.

  Args:
    output_dir: where runs, data (unless `data_dir`) and reports go.
    architectures: keys of ARCHITECTURES, e.g. 'acd'.
    seeds: runs per architecture (seeds 0..seeds-1: initial weights, data
      order and augmentation).
    config_file: the proxy experiment (default spinenet_tf/configs/
      permutation_study_proxy.yaml).
    overrides: `load_experiment` overrides applied to every run.
    data_dir: the synthetic scenes folder (written on first use).
  """

  def __init__(self, output_dir, architectures='acd', seeds=3,
               config_file=PROXY_CONFIG, overrides=(), data_dir=None):
    self.output_dir = output_dir
    self.architectures = _check_architectures(list(architectures))
    self.seeds = checks.integer('seeds', seeds, 1)
    self.config_file = config_file
    self.overrides = list(overrides)
    base = self.config(self.architectures[0], 0)  # refuses a bad config now
    size = base.model['input_size']
    self.data_dir = data_dir or os.path.join(output_dir, f'data_{size}')

  def config(self, key, seed):
    """The experiment config of architecture `key` with `seed`."""
    architecture = json.dumps({'model': ARCHITECTURES[key].model,
                               'trainer': {'seed': seed},
                               'train_data': {'seed': seed}})
    return config_lib.load_experiment(self.config_file,
                                      [architecture] + self.overrides)

  def run_dir(self, key, seed):
    return os.path.join(self.output_dir, 'runs', f'{key}_seed{seed}')

  def runs(self):
    return [(key, seed) for key in self.architectures
            for seed in range(self.seeds)]

  def result(self, key, seed):
    """The finished run's result dict, or None."""
    return results.read_result(
        os.path.join(self.run_dir(key, seed), RESULT_FILE),
        self.config(key, seed))

  def run(self, log=print):
    """Trains and evaluates every unfinished run; returns their results."""
    results = []
    for number, (key, seed) in enumerate(self.runs(), 1):
      name = f'({key}) {ARCHITECTURES[key].name} seed {seed}'
      result = self.result(key, seed)
      if result is not None:
        log(f'run {number}/{len(self.runs())} {name}: finished before, '
            f'AP {result["AP"]:.4f}')
      else:
        log(f'run {number}/{len(self.runs())} {name}: training')
        result = self._train_and_evaluate(key, seed)
        log(f'run {number}/{len(self.runs())} {name}: AP {result["AP"]:.4f} '
            f'in {result["seconds"]:.0f} s')
      results.append(result)
    return results

  def _train_and_evaluate(self, key, seed):
    config = self.config(key, seed)
    run_dir = self.run_dir(key, seed)
    metrics = proxy.train_and_evaluate(config, self.data_dir, run_dir)
    result = {'architecture': key, 'name': ARCHITECTURES[key].name,
              'seed': seed, 'seconds': metrics['seconds'],
              'train_steps': config.trainer.train_steps,
              'images_per_second': _median_images_per_second(
                  os.path.join(run_dir, 'train')),
              **{m: metrics[m] for m in METRICS},
              **self.size(key)}
    results.write_result(os.path.join(run_dir, RESULT_FILE), result, config)
    return result

  def size(self, key):
    """{'params', 'flops'} of architecture `key` (counted once, cached)."""
    path = os.path.join(self.output_dir, 'sizes.json')
    sizes = {}
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        sizes = json.load(f)
    config = self.config(key, 0)
    # Keyed by the whole model section: overrides may change the sizes.
    tag = f'{key}@' + hashlib.sha1(json.dumps(
        config.model, sort_keys=True).encode()).hexdigest()[:12]
    if tag not in sizes:
      size = proxy.measure(config)
      sizes[tag] = {'params': size['params'], 'flops': size['flops']}
      tf.io.gfile.makedirs(self.output_dir)
      atomic_write(path, json.dumps(sizes, indent=2))
    return sizes[tag]

  def summary(self):
    """One row per architecture over its finished runs: means and sample
    standard deviations (AP), sizes and speed."""
    rows = []
    for key in self.architectures:
      results = [r for r in (self.result(key, s) for s in range(self.seeds))
                 if r is not None]
      if not results:
        continue
      aps = [r['AP'] for r in results]
      row = {'architecture': key, 'name': ARCHITECTURES[key].name,
             'runs': len(results), 'AP': statistics.mean(aps),
             'AP_std': statistics.stdev(aps) if len(aps) > 1 else 0.0,
             'AP_min': min(aps), 'AP_max': max(aps)}
      for metric in METRICS[1:]:
        row[metric] = statistics.mean(r[metric] for r in results)
      row['params'] = results[0]['params']
      row['flops'] = results[0]['flops']
      row['images_per_second'] = statistics.mean(
          r['images_per_second'] for r in results)
      rows.append(row)
    return rows


def ordering(rows):
  """The paper's claim (d) >= (c) > (a) on mean AP, with each gap in units
  of the larger seed spread of the two, or None without all three."""
  by_key = {row['architecture']: row for row in rows}
  if not {'a', 'c', 'd'} <= set(by_key):
    return None
  parts, holds = [], True
  for high, low, strict in (('d', 'c', False), ('c', 'a', True)):
    gap = by_key[high]['AP'] - by_key[low]['AP']
    spread = max(by_key[high]['AP_std'], by_key[low]['AP_std'])
    holds &= gap > 0 if strict else gap >= 0
    sigmas = f'{gap / spread:+.1f} x the seed spread' if spread else 'no spread'
    parts.append(f'({high}) - ({low}) = {gap:+.4f} AP ({sigmas})')
  return (f'the paper\'s ordering (d) >= (c) > (a) '
          f'{"holds" if holds else "does not hold"}: ' + '; '.join(parts))


def markdown_table(rows):
  lines = ['| architecture | runs | AP mean +- std (min..max) | AP50 | APs | '
           'APm | APl | GFLOPs | params (M) | train images/s |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    lines.append(
        f'| ({r["architecture"]}) {r["name"]} | {r["runs"]} | '
        f'{r["AP"]:.4f} +- {r["AP_std"]:.4f} ({r["AP_min"]:.4f}..'
        f'{r["AP_max"]:.4f}) | {r["AP50"]:.4f} | {r["APs"]:.4f} | '
        f'{r["APm"]:.4f} | {r["APl"]:.4f} | {r["flops"] / 1e9:.2f} | '
        f'{r["params"] / 1e6:.3f} | {r["images_per_second"]:.1f} |')
  return '\n'.join(lines)


def _csv(rows):
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=list(rows[0]))
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


def plot(rows, path):
  """AP against GFLOPs, one point per architecture with its seed spread."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  figure, axes = plt.subplots(figsize=(6, 4.5))
  for r in rows:
    x = r['flops'] / 1e9
    axes.errorbar(x, r['AP'], yerr=r['AP_std'], fmt='o', capsize=4)
    axes.annotate(f'({r["architecture"]}) {r["name"]}', (x, r['AP']),
                  textcoords='offset points', xytext=(6, 6))
  axes.set_xlabel('GFLOPs (one image, RetinaNet)')
  axes.set_ylabel('AP (mean +- std over seeds)')
  axes.set_title('Permutation study at the proxy scale')
  axes.margins(x=0.3, y=0.2)  # room for the labels
  axes.grid(alpha=0.3)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=120)
  plt.close(figure)
  atomic_write(path, buffer.getvalue())


def write_report(study, results):
  """results.csv, summary.csv, summary.md, ap_vs_flops.png in the study's
  folder; returns the summary markdown."""
  rows = study.summary()
  verdict = ordering(rows)
  text = markdown_table(rows) + ('\n\n' + verdict if verdict else '') + '\n'
  out = study.output_dir
  atomic_write(os.path.join(out, 'results.csv'), _csv(results))
  atomic_write(os.path.join(out, 'summary.csv'), _csv(rows))
  atomic_write(os.path.join(out, 'summary.md'), text)
  plot(rows, os.path.join(out, 'ap_vs_flops.png'))
  return text
