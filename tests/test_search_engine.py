"""The search engine in one process, its training replaced by scripted
outcomes (the real training runs in test_search_workers.py): a NaN trial
and an erroring trial are recorded as failed with their reasons and the
search goes on; over-budget candidates are not trained and do not use the
budget; pruning stops a trial on its reported AP; the outputs load."""
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import optuna
import pytest

from spinenet_tf.models.backbone import build_backbone
from spinenet_tf.search import engine, proxy, report, samplers
from spinenet_tf.search.space import SearchSpace
from spinenet_tf.training.trainer import NonFiniteLossError


class ScriptedTraining:
  """Stands in for proxy.train_and_evaluate: each call takes the next
  outcome, an exception to raise or a list of APs to report (the last is
  the result)."""

  def __init__(self, outcomes):
    self.outcomes, self.configs = list(outcomes), []

  def __call__(self, config, data_dir, run_dir, on_evaluate=None):
    self.configs.append(config)
    outcome = self.outcomes.pop(0)
    if isinstance(outcome, Exception):
      raise outcome
    for step, ap in enumerate(outcome, 1):
      if on_evaluate is not None:
        on_evaluate(step * 100, {'AP': ap})
    return {'AP': outcome[-1], 'AP50': 2 * outcome[-1], 'seconds': 1.5}


def _search(tmp_path, monkeypatch, outcomes, measure=None, overrides=(),
            **kwargs):
  training = ScriptedTraining(outcomes)
  monkeypatch.setattr(proxy, 'train_and_evaluate', training)
  if measure is not None:
    monkeypatch.setattr(proxy.Proxy, 'measure', measure)
  search = engine.Search(
      str(tmp_path / 'search'), SearchSpace('SpineNet-49'),
      proxy.Proxy(overrides=[proxy.QUICK_OVERRIDES, *overrides],
                  latency_runs=0),
      sampler='random', seed=0, **kwargs)
  return search, training


def test_failed_trials_keep_their_reason_and_the_search_goes_on(
    tmp_path, monkeypatch):
  search, training = _search(tmp_path, monkeypatch, [
      NonFiniteLossError('Non-finite loss in steps 1..2'),
      ValueError('the candidate broke'), [0.25]])
  lines = []
  search.run(3, log=lines.append)
  trials = search.study.get_trials()
  assert [t.state.name for t in trials] == ['FAIL', 'FAIL', 'COMPLETE']
  assert trials[0].user_attrs['fail_reason'].startswith(
      'NaN loss: NonFiniteLossError: Non-finite loss')
  assert trials[1].user_attrs['fail_reason'] == (
      'ValueError: the candidate broke')
  # Measured for real: the candidate's RetinaNet at the proxy scale.
  assert trials[2].values == [0.25]
  assert 1e5 < trials[2].user_attrs['params'] < 3e6
  assert 0.1 < trials[2].user_attrs['gflops'] < 2
  assert lines[0].startswith('trial 1 of 3 (#0) FAIL, 0.')
  assert '(NaN loss: NonFiniteLossError' in lines[0]
  assert lines[2].startswith('trial 3 of 3 (#2) COMPLETE: AP 0.2500')
  assert 'best AP 0.2500 (#2)' in lines[2] and 'ETA 0.0 min' in lines[2]
  # Each trial trained its own candidate file with the proxy's settings.
  backbones = [c.model['backbone'] for c in training.configs]
  assert backbones == [os.path.join(search.output_dir, 'trials',
                                    f'trial_{n:04d}', 'candidate.yaml')
                       for n in range(3)]
  assert training.configs[0].model['backbone_kwargs'][
      'filter_size_scale'] == 0.25
  # A rerun with the budget spent trains nothing.
  search.run(3, log=lines.append)
  assert lines[-1] == "study 'spinenet_search' has 3 trials already."

  summary = report.write_report(search.study, search.output_dir, top_k=2)
  assert summary.startswith('3 trials 1 complete, 2 fail; best AP 0.2500')
  with open(os.path.join(search.output_dir, 'trials.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [r['state'] for r in rows] == ['FAIL', 'FAIL', 'COMPLETE']
  assert rows[1]['reason'] == 'ValueError: the candidate broke'
  assert json.loads(rows[2]['choices']) == trials[2].params
  # The best candidate loads as a backbone with the five endpoints.
  best = os.path.join(search.output_dir, 'top', 'rank1.yaml')
  backbone = build_backbone(best, (128, 128, 3), filter_size_scale=0.25)
  assert sorted(backbone.output_specs) == ['3', '4', '5', '6', '7']
  specs = search.space.decode(trials[2].params)
  assert search.space.decode(search.space.encode(specs)) == specs
  for name in ('top/rank1.png', 'top/top.csv', 'pareto.png'):
    assert os.path.getsize(os.path.join(search.output_dir, name)) > 0
  assert not os.path.exists(os.path.join(search.output_dir, 'top',
                                         'rank2.yaml'))


def _fake_measure(gflops_by_call):
  calls = iter(gflops_by_call)
  return lambda self, config: {'params': 1000, 'flops': next(calls) * 1e9,
                               'latency_ms': float('nan')}


def test_over_budget_candidates_are_not_trained_nor_counted(
    tmp_path, monkeypatch):
  search, training = _search(tmp_path, monkeypatch, [[0.1], [0.2]],
                             measure=_fake_measure([0.5, 3.0, 0.7]),
                             max_gflops=1.0)
  search.run(2, log=lambda line: None)
  trials = search.study.get_trials()
  assert [t.state.name for t in trials] == ['COMPLETE', 'PRUNED', 'COMPLETE']
  assert trials[1].user_attrs['prune_reason'] == (
      'gflops 3 over the budget 1; not trained')
  assert len(training.configs) == 2 and len(search.counted_trials()) == 2


def test_pruner_stops_a_trial_on_its_reported_ap(tmp_path, monkeypatch):
  # Successive halving sets its first rung from the first finished trial
  # (min_resource 'auto'), so trial 0 runs through; trial 1 sets the bar at
  # the rung and trial 2, far below it at its first report, is pruned.
  good = [0.3, 0.4, 0.5]
  search, training = _search(
      tmp_path, monkeypatch, [good, good, [0.01, 0.02, 0.03]],
      measure=_fake_measure([0.5] * 3), overrides=['trainer.train_steps=300'],
      pruner='successive_halving')
  search.run(3, log=lambda line: None)
  trials = search.study.get_trials()
  assert [t.state.name for t in trials] == ['COMPLETE', 'COMPLETE', 'PRUNED']
  assert trials[0].intermediate_values == {100: 0.3, 200: 0.4, 300: 0.5}
  assert trials[2].intermediate_values == {100: 0.01}
  assert trials[2].user_attrs['prune_reason'] == 'AP 0.0100 at step 100'
  # Evaluated reports_per_trial (3) times over the proxy's 300 steps.
  assert training.configs[0].trainer.eval_interval == 100


def test_settings_that_cannot_work_are_refused(tmp_path):
  space = SearchSpace('SpineNet-49')
  quick = proxy.Proxy(overrides=[proxy.QUICK_OVERRIDES], latency_runs=0)
  folder = str(tmp_path / 's')
  with pytest.raises(ValueError, match='prunes one-objective'):
    engine.Search(folder, space, quick, objectives='ap,flops',
                  pruner='median')
  with pytest.raises(ValueError, match='needs latency_runs > 0'):
    engine.Search(folder, space, quick, objectives='ap,latency')
  with pytest.raises(ValueError, match='storage must be a database URL'):
    engine.Search(folder, space, quick, storage='study.db')
  with pytest.raises(ValueError, match='sampler'):
    engine.Search(folder, space, quick, sampler='grid')
  with pytest.raises(ValueError, match='model.input_size 96 must be a '
                     'multiple of 128'):
    proxy.Proxy(overrides=['model.input_size=96'])
  engine.Search(folder, space, quick)  # one objective: maximize AP
  with pytest.raises(ValueError, match='exists with directions'):
    engine.Search(folder, space, quick, objectives='ap,flops')


def test_two_objective_search_returns_ap_and_flops(tmp_path, monkeypatch):
  search, _ = _search(tmp_path, monkeypatch, [[0.2], [0.3]],
                      measure=_fake_measure([0.5, 0.9]), objectives='ap,flops')
  search.study.sampler = samplers.build_sampler('nsga2')
  search.run(2, log=lambda line: None)
  assert [t.values for t in search.study.get_trials()] == [[0.2, 0.5],
                                                          [0.3, 0.9]]
  assert isinstance(search.study.sampler, optuna.samplers.NSGAIISampler)
  assert report.pareto_front([(0.5, 0.2), (0.9, 0.3), (0.7, 0.1)]) == [
      (0.5, 0.2), (0.9, 0.3)]


def test_references_train_once_under_the_proxy_then_are_read_back(
    tmp_path, monkeypatch):
  search, training = _search(tmp_path, monkeypatch, [[0.31], [0.12]],
                             measure=_fake_measure([0.46, 0.48]))
  spinenet = search.reference('SpineNet-49')
  baseline = search.reference('R50-FPN')
  assert (spinenet['AP'], spinenet['gflops']) == (0.31, 0.46)
  assert (baseline['AP'], baseline['gflops']) == (0.12, 0.48)
  first, second = training.configs
  assert first.model['backbone'] == '49'
  assert second.model['backbone'] == 'resnet50'
  assert second.model['decoder'] == 'fpn'
  assert second.model['backbone_kwargs'] == {'depth_multiplier': 0.25}
  # Both at the proxy's scale, and cached: asking again trains nothing.
  assert (second.model['input_size'] == first.model['input_size']
          == search.proxy.input_size)
  again = search.reference('SpineNet-49')
  assert again['AP'] == 0.31 and again['params'] == spinenet['params']
  assert len(training.configs) == 2
  with pytest.raises(ValueError, match='reference'):
    search.reference('SpineNet-96')


def test_a_worker_started_after_a_kill_fails_the_dead_trial_first(
    tmp_path, monkeypatch):
  # A dead worker's trial: RUNNING, its last heartbeat older than the grace
  # period (2 heartbeats). A worker starting now must not count it as
  # running (it would stop with the budget short); it fails it, and the
  # retry is queued and run here.
  search, _ = _search(tmp_path, monkeypatch, [[0.5]], heartbeat_seconds=1)
  dead = search.study.ask()
  search.storage.record_heartbeat(dead._trial_id)
  time.sleep(3.5)  # SQLite keeps whole seconds: 3 > the 2 s grace
  search.run(1, log=lambda line: None)
  trials = search.study.get_trials()
  assert [t.state.name for t in trials] == ['FAIL', 'COMPLETE']
  assert trials[1].system_attrs['failed_trial'] == dead.number
  assert [t.number for t in engine.counted(trials)] == [1]


def _draws(folder, monkeypatch, sampler, workers, n_trials=9):
  """{trial number: params} of `workers` Search objects on one study, all
  built before any trial (workers started together with one command),
  then each run to its share of `n_trials`."""
  monkeypatch.setattr(proxy, 'train_and_evaluate',
                      lambda config, data_dir, run_dir, on_evaluate=None: {
                          'AP': 0.2, 'AP50': 0.4, 'seconds': 1.0})
  monkeypatch.setattr(proxy.Proxy, 'measure', lambda self, config: {
      'params': 1000, 'flops': 4e8, 'latency_ms': float('nan')})
  quick = proxy.Proxy(overrides=[proxy.QUICK_OVERRIDES], latency_runs=0)
  space = SearchSpace('SpineNet-49')
  searches = [engine.Search(str(folder), space, quick, sampler=sampler,
                            seed=5) for _ in range(workers)]
  for share, search in enumerate(searches, 1):
    search.run(n_trials * share // workers, log=lambda line: None)
  return {t.number: tuple(sorted(t.params.items()))
          for t in searches[0].study.get_trials()}


@pytest.mark.parametrize('sampler', ['random', 'tpe', 'rl'])
def test_workers_started_with_one_seed_draw_distinct_candidates(
    tmp_path, monkeypatch, sampler):
  # Before: every worker seeded its sampler with seed + the study's trial
  # count at start-up, 0 for all: the three drew the same candidates.
  draws = _draws(tmp_path / 'a', monkeypatch, sampler, workers=3)
  assert sorted(draws) == list(range(9))
  assert len(set(draws.values())) == 9
  # The study is a function of its seed: trial n is drawn from (seed, n).
  assert _draws(tmp_path / 'b', monkeypatch, sampler, workers=3) == draws
  if sampler == 'random':  # ... whatever the number of workers
    assert _draws(tmp_path / 'c', monkeypatch, sampler, workers=1) == draws


def test_the_study_keeps_the_seed_of_its_first_worker(tmp_path):
  space = SearchSpace('SpineNet-49')
  quick = proxy.Proxy(overrides=[proxy.QUICK_OVERRIDES], latency_runs=0)
  folder = str(tmp_path / 's')
  engine.Search(folder, space, quick, sampler='random', seed=5)
  with pytest.raises(ValueError, match="study 'spinenet_search' was started "
                     'with seed 5; this worker has seed 6'):
    engine.Search(folder, space, quick, sampler='random', seed=6)
  joined = engine.Search(folder, space, quick, sampler='random')
  assert joined.study.sampler.seed == 5  # took the study's
  engine.Search(str(tmp_path / 'u'), space, quick, sampler='random')
  with pytest.raises(ValueError, match='started without a seed'):
    engine.Search(str(tmp_path / 'u'), space, quick, sampler='random', seed=1)
  with pytest.raises(ValueError, match="sampler 'rl' needs a database "
                     'storage'):
    engine.Search(folder, space, quick, sampler='rl',
                  storage=f'journal:{tmp_path}/journal.log')


def test_a_study_resumed_with_other_settings_is_refused(tmp_path):
  # Before: a worker with another space, proxy, budget or sampler joined
  # the study, and its trials were ranked with trials that answered
  # another question.
  space = SearchSpace('SpineNet-49')
  quick = proxy.Proxy(overrides=[proxy.QUICK_OVERRIDES], latency_runs=0)
  folder = str(tmp_path / 's')
  engine.Search(folder, space, quick, sampler='random', seed=1)
  engine.Search(folder, space, quick, sampler='random', seed=1)  # joins
  longer = proxy.Proxy(overrides=[proxy.QUICK_OVERRIDES,
                                  'trainer.train_steps=3'], latency_runs=0)
  for change, difference in [
      (dict(space=SearchSpace('SpineNet-49', window=3)), 'window: 5 -> 3'),
      (dict(proxy=longer), 'proxy.trainer.train_steps: 2 -> 3'),
      (dict(max_gflops=5.0), 'max_gflops: None -> 5.0'),
      (dict(sampler='tpe'), "sampler: 'random' -> 'tpe'")]:
    args = {'space': space, 'proxy': quick, 'sampler': 'random', 'seed': 1,
            **change}
    with pytest.raises(ValueError) as error:
      engine.Search(folder, args.pop('space'), args.pop('proxy'), **args)
    assert str(error.value) == (
        f"study 'spinenet_search' was started with other settings "
        f'({difference}); give it the same settings, or start another '
        '--study_name.')
  # Another study in the folder: its trial_0000 would resume the first's.
  with pytest.raises(ValueError, match=f"{folder} holds the trials of study "
                     "'spinenet_search' in study.db, not of 'other' in "
                     'study.db: give that study, or another --output_dir'):
    engine.Search(folder, space, quick, sampler='random', study_name='other')
  with pytest.raises(ValueError, match="'spinenet_search' in study.db, not "
                     "of 'spinenet_search' in journal:"):
    engine.Search(folder, space, quick, storage=f'journal:{tmp_path}/j.log')
  assert engine.study_names(engine.open_storage(None, folder)) == [
      'spinenet_search']
  with open(os.path.join(folder, engine.FOLDER_FILE), 'w') as f:
    f.write('{"study_na')  # a damaged record: one line, not a traceback
  with pytest.raises(ValueError, match='search_study.json is damaged'):
    engine.Search(folder, space, quick, sampler='random', seed=1)


def test_a_budget_below_every_candidate_stops_with_one_line(
    tmp_path, monkeypatch):
  # Before: over-budget draws use no trial budget, so the loop never ended.
  search, training = _search(
      tmp_path, monkeypatch, [], max_gflops=0.1,
      measure=_fake_measure([0.5 + i for i in range(1000)]))
  with pytest.raises(ValueError) as error:
    search.run(3, log=lambda line: None)
  assert str(error.value) == (
      '50 candidates in a row were over the budget, max_gflops 0.1 '
      '(smallest drawn 0.5): the budget is likely below every candidate of '
      'this space; raise it.')
  assert len(search.study.get_trials()) == engine.OVER_BUDGET_LIMIT
  assert not training.configs


def test_one_worker_trains_each_reference(tmp_path, monkeypatch):
  a, training = _search(tmp_path, monkeypatch, [[0.31]],
                        measure=_fake_measure([0.46]))
  b = engine.Search(a.output_dir, a.space, a.proxy, sampler='random', seed=0)
  # B holds the claim (it is training): A goes on without the result.
  assert b.claim('spinenet_search:reference:SpineNet-49') is None
  lines = []
  assert a.reference('SpineNet-49', log=lines.append) is None
  assert lines == [f'reference SpineNet-49: trained by {engine.worker_name()}'
                   '; this worker goes on.']
  assert a.reference('R50-FPN', train=False) is None  # report_only: never
  assert not training.configs
  # A claim whose worker died on this host is taken over, once.
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  claim = optuna.load_study(study_name='spinenet_search:reference:'
                            'SpineNet-49', storage=a.storage)
  claim.set_user_attr('worker', f'{socket.gethostname()}:{dead.pid}')
  assert a.reference('SpineNet-49')['AP'] == 0.31
  assert len(training.configs) == 1
  assert b.reference('SpineNet-49')['AP'] == 0.31  # read back
  assert engine.study_names(a.storage) == ['spinenet_search']


def test_a_result_of_another_config_is_refused(tmp_path, monkeypatch):
  search, training = _search(tmp_path, monkeypatch, [[0.31]],
                             measure=_fake_measure([0.46]))
  search.reference('SpineNet-49')
  # Another search, into which the references were copied to reuse them
  # (the study itself refuses another proxy: test_a_study_resumed_with_
  # other_settings_is_refused).
  changed = engine.Search(
      str(tmp_path / 'other'), search.space,
      proxy.Proxy(overrides=[proxy.QUICK_OVERRIDES, 'trainer.train_steps=4'],
                  latency_runs=0), sampler='random', seed=0)
  shutil.copytree(os.path.join(search.output_dir, 'references'),
                  os.path.join(changed.output_dir, 'references'))
  with pytest.raises(ValueError, match=r'references/SpineNet-49/result.json '
                     r'was produced by another config \(trainer.train_steps: '
                     r'2 -> 4\)'):
    changed.reference('SpineNet-49')
  assert len(training.configs) == 1


def test_the_report_rewrites_top_whole(tmp_path, monkeypatch):
  search, _ = _search(tmp_path, monkeypatch, [[0.1], [0.2], [0.3]],
                      measure=_fake_measure([0.5] * 3))
  search.run(3, log=lambda line: None)
  report.write_report(search.study, search.output_dir, top_k=3)
  top = os.path.join(search.output_dir, 'top')
  assert sorted(os.listdir(top)) == [
      'rank1.png', 'rank1.yaml', 'rank2.png', 'rank2.yaml', 'rank3.png',
      'rank3.yaml', 'top.csv']
  report.write_report(search.study, search.output_dir, top_k=1)
  assert sorted(os.listdir(top)) == ['rank1.png', 'rank1.yaml', 'top.csv']
  assert not [n for n in os.listdir(search.output_dir)
              if n.startswith('.top-')]


@pytest.mark.parametrize('url, message', [
    ('postgresql:/me:secret@localhost/db',
     "storage must be a database URL (sqlite:///..., postgresql://...) or "
     "journal:<file>, got 'postgresql:/me:***@localhost/db'."),
    ('postgresql://me:secret@localhost:notaport/db',
     'storage postgresql://me:***@localhost:notaport/db: cannot open it: '
     "not a valid database URL (invalid literal for int() with base 10: "
     "'notaport')"),
    ('postgres://me:secret@localhost:1/db',
     'storage postgres://me:***@localhost:1/db: cannot open it: not a valid '
     "database URL (Can't load plugin: sqlalchemy.dialects:postgres); "
     'PostgreSQL URLs start postgresql://'),
    ('postgresql://me:top@secret@localhost:1/db',
     "storage postgresql://me:***@localhost:1/db: the user or password "
     "holds '@'; write it as %40."),
    ('postgresql://me@localhost/db?sslmode=require&PassWord=secret',
     None),
])
def test_a_storage_url_never_shows_its_password(url, message):
  """Before: a password given as a query parameter or in a malformed URL
  was printed, and a bad port was a traceback."""
  if message is None:
    assert engine.shown_url(url) == (
        'postgresql://me@localhost/db?sslmode=require&PassWord=***')
    return
  with pytest.raises(ValueError) as error:
    engine.open_storage(url, None)
  assert str(error.value) == message


def test_a_foreign_database_is_refused_and_left_unchanged(tmp_path):
  """Before: another application's SQLite file given as the storage got
  Optuna's tables added to it."""
  import sqlite3
  path = tmp_path / 'app.db'
  connection = sqlite3.connect(path)
  connection.execute('create table users (id integer)')
  connection.commit()
  connection.close()
  before = path.read_bytes()
  with pytest.raises(ValueError) as error:
    engine.open_storage(f'sqlite:///{path}', None)
  assert str(error.value) == (
      f'storage sqlite:///{path}: holds tables of something else (users) '
      'and no Optuna study; it is left unchanged: give another database or '
      'file.')
  assert path.read_bytes() == before
  engine.open_storage(f'sqlite:///{tmp_path}/new.db', None)  # empty: fine
  engine.open_storage(f'sqlite:///{tmp_path}/new.db', None)  # Optuna's: fine
