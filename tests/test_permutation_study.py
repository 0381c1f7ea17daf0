"""scripts/permutation_study.py: the quick study trains, evaluates and
reports; a rerun keeps finished runs and resumes an unfinished one from its
checkpoint; the table and the ordering verdict say what the numbers say."""
import csv
import os
import subprocess
import sys

import pytest

from spinenet_tf.search import permutation_study as study_lib

ROOT = os.path.join(os.path.dirname(__file__), '..')


@pytest.fixture(scope='module')
def quick_study(tmp_path_factory):
  """The quick study of (a) and (d), one seed, trained in this process."""
  study = study_lib.Study(str(tmp_path_factory.mktemp('study')), 'ad', 1,
                          overrides=[study_lib.QUICK_OVERRIDES])
  lines = []
  results = study.run(log=lines.append)
  return study, results, lines


def test_quick_study_trains_and_evaluates_each_run(quick_study):
  study, results, lines = quick_study
  assert [(r['architecture'], r['seed']) for r in results] == [('a', 0),
                                                               ('d', 0)]
  assert [line.endswith('training') for line in lines] == [True, False] * 2
  for result in results:
    assert result['train_steps'] == 2 and result['images_per_second'] > 0
    assert 0 <= result['AP'] <= 1 and result['flops'] > 0
  # Each architecture at the proxy scale: R50-FPN with 64-channel FPN and
  # head, SpineNet-49 at x0.25 / alpha 0.25 with 64 endpoints.
  config = study.config('d', 0)
  assert config.model['backbone_kwargs'] == study_lib.ARCHITECTURES[
      'd'].model['backbone_kwargs'] and config.model['num_filters'] == 64
  sizes = {r['architecture']: r['params'] for r in results}
  assert sizes['a'] != sizes['d']


def test_rerun_keeps_finished_runs_and_resumes_unfinished(quick_study):
  study, results, _ = quick_study
  finished = os.path.join(study.run_dir('a', 0), study_lib.RESULT_FILE)
  mtime = os.path.getmtime(finished)
  # (d) as if killed after its last checkpoint: no result yet.
  os.remove(os.path.join(study.run_dir('d', 0), study_lib.RESULT_FILE))
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'permutation_study.py'),
       f'--output_dir={study.output_dir}', '--architectures=ad', '--seeds=1',
       '--quick'], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'run 1/2 (a) R50-FPN seed 0: finished before' in result.stdout
  assert 'run 2/2 (d) SpineNet-49 seed 0: training' in result.stdout
  assert os.path.getmtime(finished) == mtime
  # Restored at step 2 of 2: evaluated, not trained again.
  assert 'step 2/2 (100%)' not in result.stdout
  assert 'step 2 eval: AP' in result.stdout
  with open(os.path.join(study.output_dir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [row['architecture'] for row in rows] == ['a', 'd']
  assert '| (a) R50-FPN | 1 |' in result.stdout
  for name in ('summary.md', 'summary.csv', 'ap_vs_flops.png'):
    assert os.path.getsize(os.path.join(study.output_dir, name)) > 0


def _row(key, ap, std):
  return {'architecture': key, 'name': study_lib.ARCHITECTURES[key].name,
          'runs': 3, 'AP': ap, 'AP_std': std, 'AP_min': ap - std,
          'AP_max': ap + std, 'AP50': 0.5, 'APs': 0.1, 'APm': 0.2,
          'APl': 0.3, 'flops': 2e9, 'params': 1.5e6,
          'images_per_second': 10.0}


def test_ordering_verdict_in_units_of_the_seed_spread():
  rows = [_row('a', 0.30, 0.01), _row('c', 0.34, 0.01), _row('d', 0.35, 0.02)]
  verdict = study_lib.ordering(rows)
  assert verdict.startswith("the paper's ordering (d) >= (c) > (a) holds")
  assert '(d) - (c) = +0.0100 AP (+0.5 x the seed spread)' in verdict
  assert '(c) - (a) = +0.0400 AP (+4.0 x the seed spread)' in verdict
  rows[0]['AP'] = 0.36
  assert 'does not hold' in study_lib.ordering(rows)
  assert study_lib.ordering(rows[1:]) is None
  table = study_lib.markdown_table(rows)
  assert '| (d) SpineNet-49 | 3 | 0.3500 +- 0.0200 (0.3300..0.3700) |' in table


@pytest.mark.parametrize('flag, message', [
    ('--architectures=ab', "architectures must be letters among ['a', 'c', "
                           "'d']"),
    ('--seeds=0', 'seeds'),
])
def test_bad_flags_are_one_line_errors(tmp_path, flag, message):
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'permutation_study.py'),
       f'--output_dir={tmp_path}', flag], capture_output=True, text=True,
      timeout=120)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
