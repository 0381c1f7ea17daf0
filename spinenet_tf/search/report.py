"""What a search leaves in its folder, read from the study alone.

- trials.csv: one row per trial: state, AP, FLOPs, parameters, latency,
  time, the reason of a failure or prune, the spec file, the choices;
- top/rank<r>.yaml and top/rank<r>.png: the k best candidates by AP (spec
  files `build_backbone` reads, SpineNet-49's scaling) and their pictures,
  top/top.csv their trial numbers;
- pareto.png: AP against GFLOPs for every scored trial, the frontier, and
  reference points (SpineNet-49, R50-FPN under the same proxy) if given.
"""

import csv
import io
import json
import os
import shutil
import tempfile

import optuna

from spinenet_tf.io_utils import atomic_write

CANDIDATE_FILE = 'candidate.yaml'  # in each trial's folder
COLUMNS = ('number', 'state', 'AP', 'AP50', 'gflops', 'params', 'latency_ms',
           'seconds', 'reason', 'worker', 'specs_file', 'retry_of', 'choices')
# A failed trial without a recorded reason: its worker stopped (SIGKILL,
# Ctrl-C, lost machine) and the heartbeat check or Optuna failed it.
NO_REASON = 'its worker stopped mid-trial'


def trial_row(trial):
  """The trials.csv row of a FrozenTrial."""
  attrs = trial.user_attrs
  specs = os.path.join(attrs['trial_dir'], CANDIDATE_FILE) if (
      'trial_dir' in attrs) else ''
  return {'number': trial.number, 'state': trial.state.name,
          **{key: attrs.get(key, '') for key in COLUMNS[2:8]},
          'reason': (attrs.get('fail_reason') or attrs.get('prune_reason')
                     or (NO_REASON if trial.state.name == 'FAIL' else '')),
          'worker': attrs.get('worker', ''),
          'specs_file': specs,
          'retry_of': trial.system_attrs.get('failed_trial', ''),
          'choices': json.dumps(trial.params, sort_keys=True)}


def scored(trials):
  """Complete trials, best AP first."""
  done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
  return sorted(done, key=lambda t: -t.user_attrs['AP'])


def pareto_front(points):
  """The (gflops, AP) points no other point beats on both, by GFLOPs."""
  front, best = [], float('-inf')
  for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
    if y > best:
      front.append((x, y))
      best = y
  return front


def _csv(rows, columns):
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=list(columns))
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


def write_trials_csv(trials, path):
  return atomic_write(path, _csv([trial_row(t) for t in trials], COLUMNS))


def _replace_folder(source, target, attempts=3):
  """Moves folder `source` to `target`, replacing it (another worker may
  write its report at the same moment: tried again)."""
  for attempt in range(attempts):
    shutil.rmtree(target, ignore_errors=True)
    try:
      return os.replace(source, target)
    except OSError:
      if attempt == attempts - 1:
        raise


def write_top(trials, output_dir, k):
  """Writes top/ whole (the k best candidates with their pictures, nothing
  left of an earlier report); returns the spec files, best first."""
  from spinenet_tf.viz.architecture import draw_architecture

  top_dir = os.path.join(output_dir, 'top')
  staging = tempfile.mkdtemp(prefix='.top-', dir=output_dir)
  try:
    rows = []
    for rank, trial in enumerate(scored(trials)[:k], 1):
      source = os.path.join(output_dir, trial_row(trial)['specs_file'])
      path = os.path.join(staging, f'rank{rank}.yaml')
      shutil.copyfile(source, path)
      attrs = trial.user_attrs
      draw_architecture(path, os.path.join(staging, f'rank{rank}.png'),
                        title=f'rank {rank}: trial {trial.number}, proxy AP '
                        f'{attrs["AP"]:.4f}, {attrs["gflops"]:.3f} GFLOPs')
      rows.append({'rank': rank, 'number': trial.number, 'AP': attrs['AP'],
                   'gflops': attrs['gflops'], 'file': f'rank{rank}.yaml'})
    with open(os.path.join(staging, 'top.csv'), 'w') as f:
      f.write(_csv(rows, ('rank', 'number', 'AP', 'gflops', 'file')))
    os.chmod(staging, 0o755)
    _replace_folder(staging, top_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return [os.path.join(top_dir, row['file']) for row in rows]


def plot_pareto(trials, path, references=()):
  """AP against GFLOPs: every scored trial, the frontier, and `references`
  ([(name, gflops, AP)]) as labelled stars."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  points = [(t.user_attrs['gflops'], t.user_attrs['AP'])
            for t in scored(trials)]
  figure, axes = plt.subplots(figsize=(6.5, 4.5))
  if points:
    axes.scatter(*zip(*points), s=18, alpha=0.6, label='trials')
    axes.plot(*zip(*pareto_front(points)), drawstyle='steps-post',
              color='tab:red', label='frontier')
  for name, gflops, ap in references:
    axes.scatter([gflops], [ap], marker='*', s=160, color='black', zorder=3)
    axes.annotate(name, (gflops, ap), textcoords='offset points',
                  xytext=(6, 6))
  axes.set_xlabel('GFLOPs (one image at the proxy size)')
  axes.set_ylabel('proxy AP')
  axes.set_title(f'Search: {len(points)} scored trials')
  axes.grid(alpha=0.3)
  axes.legend(loc='lower right')
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=120)
  plt.close(figure)
  return atomic_write(path, buffer.getvalue())


def write_report(study, output_dir, top_k=5, references=()):
  """trials.csv, top/, pareto.png; returns a short text summary."""
  trials = study.get_trials(deepcopy=False)
  write_trials_csv(trials, os.path.join(output_dir, 'trials.csv'))
  tops = write_top(trials, output_dir, top_k)
  plot_pareto(trials, os.path.join(output_dir, 'pareto.png'), references)
  states = {}
  for trial in trials:
    states[trial.state.name] = states.get(trial.state.name, 0) + 1
  best = scored(trials)[:1]
  text = f'{len(trials)} trials ' + ', '.join(
      f'{n} {s.lower()}' for s, n in sorted(states.items()))
  if best:
    text += (f'; best AP {best[0].user_attrs["AP"]:.4f} (trial '
             f'{best[0].number}) in {tops[0]}')
  return text
