"""The search loop, on an Optuna study that any number of workers share.

    search = Search('/tmp/search', SearchSpace('SpineNet-49'), Proxy())
    search.run(n_trials=30)      # this worker's share of 30 study trials

Each trial draws every parameter of the space (`trial.suggest_int`),
writes the candidate's block specs to `trials/trial_NNNN/candidate.yaml`,
measures it (parameters, FLOPs, latency), trains it on the proxy there and
returns its AP (and FLOPs or latency for a two-objective search). What it
measured is on the trial (user attributes), so `report` works from the
study alone.

The study lives in Optuna's storage: a SQLite file in the search folder by
default, or any storage URL (postgresql://, mysql://, or journal:<file>
for Optuna's journal file on a shared filesystem). Every worker runs the
same command; the budget is the study's trial count, not the worker's.

Faults: a NaN loss or an error in a trial marks it failed with the reason
(`fail_reason`) and the worker takes the next trial. With an RDB storage
each running trial sends a heartbeat; a trial whose worker died (SIGKILL)
is failed by the next worker that starts a trial after the grace period,
and retried once in the same folder, so it resumes from its checkpoint.
"""

import json
import math
import os
import re
import socket
import statistics
import time
import traceback
import warnings

import keras
import optuna
import sqlalchemy

from spinenet_tf import checks, io_utils, results
from spinenet_tf import specs as specs_lib
from spinenet_tf.search import controller, permutation_study
from spinenet_tf.search import proxy as proxy_lib
from spinenet_tf.search import report, samplers
from spinenet_tf.training.trainer import NonFiniteLossError

# objectives flag -> the trial's measured values it optimizes, in order.
OBJECTIVES = {'ap': ('AP',), 'ap,flops': ('AP', 'gflops'),
              'ap,latency': ('AP', 'latency_ms')}
DIRECTIONS = {'AP': 'maximize', 'gflops': 'minimize', 'latency_ms': 'minimize'}
# Reference points trained under the same proxy: model section keys.
REFERENCES = {'SpineNet-49': {'backbone': '49'},
              'R50-FPN': permutation_study.ARCHITECTURES['a'].model}
STUDY_FILE = 'study.db'
# In the search folder: the study its trial folders belong to.
FOLDER_FILE = 'search_study.json'
OVER_BUDGET = 'over_budget'
# A worker stops after this many over-budget draws in a row: the budget is
# likely below every candidate of the space.
OVER_BUDGET_LIMIT = 50
# The study of the claim on reference <name> (one worker trains it).
REFERENCE_CLAIM = '{study}:reference:{name}'


def worker_name():
  """'host:pid' of this process (on each trial it runs)."""
  return f'{socket.gethostname()}:{os.getpid()}'


def study_names(storage):
  """The search studies in `storage` (reference claims left out)."""
  return sorted(name for name in optuna.get_all_study_names(storage)
                if ':reference:' not in name)


def load_study(storage, study_name):
  """An existing study; a ValueError listing the studies if it is not."""
  names = study_names(storage)
  if study_name not in names:
    raise ValueError(f'no study {study_name!r} in the storage; its studies: '
                     f'{names or "none"}.')
  return optuna.load_study(study_name=study_name, storage=storage)


# Query parameters that carry a secret (libpq's and the MySQL drivers').
_SECRET_PARAMETER = re.compile(
    r'(?i)([?&](?:password|passwd|pwd|passfile|sslpassword|token|secret)=)'
    r'[^&]*')


def shown_url(url):
  """`url` with its password (in the user info, up to the last '@', or a
  query parameter) replaced by ***, however malformed the rest: for
  messages."""
  head, at, rest = url.rpartition('@')
  if at:
    scheme = head.find('://')
    colon = head.find(':', scheme + 3 if scheme >= 0 else head.find(':') + 1)
    if colon >= 0:
      url = f'{head[:colon + 1]}***@{rest}'
  return _SECRET_PARAMETER.sub(r'\1***', url)


def open_storage(url, output_dir, heartbeat_seconds=60):
  """An Optuna storage: None for a SQLite file in `output_dir`, a database
  URL (with heartbeats and one retry of a dead worker's trial), or
  'journal:<path>' (no heartbeats: a dead worker's trial stays RUNNING)."""
  if url is None:
    os.makedirs(output_dir, exist_ok=True)
    url = 'sqlite:///' + os.path.abspath(os.path.join(output_dir, STUDY_FILE))
  if not isinstance(url, str) or not (url.startswith('journal:')
                                      or '://' in url):
    shown = shown_url(url) if isinstance(url, str) else url
    raise ValueError(f'storage must be a database URL (sqlite:///..., '
                     f'postgresql://...) or journal:<file>, got {shown!r}.')
  if url.startswith('journal:'):
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(url[len('journal:'):]))
  authority = url.split('://', 1)[1].split('/', 1)[0]
  if authority.count('@') > 1:
    raise ValueError(f"storage {shown_url(url)}: the user or password holds "
                     "'@'; write it as %40.")
  heartbeat = checks.integer('heartbeat_seconds', heartbeat_seconds, 1)
  engine_kwargs = ({'connect_args': {'timeout': 120}}
                   if url.startswith('sqlite') else {'pool_pre_ping': True})
  with warnings.catch_warnings():  # heartbeats are 'experimental'
    warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
    try:
      _refuse_foreign_database(url, engine_kwargs)
      return _rdb_storage(url, engine_kwargs, heartbeat)
    except ForeignDatabaseError:
      raise
    except ImportError as e:
      raise ValueError(
          f'storage {url.split("://")[0]}://...: its database driver is not '
          f'installed ({e.__cause__ or e}); for PostgreSQL: pip install '
          '"spinenet_tf[postgres]"; for MySQL: pip install PyMySQL and a '
          'mysql+pymysql:// URL.') from e
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as e:
      reason = str(getattr(e, 'orig', None) or e)
      if isinstance(e, (sqlalchemy.exc.ArgumentError, ValueError)):
        reason = f'not a valid database URL ({reason})'
      if url.startswith('postgres://'):
        reason += '; PostgreSQL URLs start postgresql://'
      raise ValueError(f'storage {shown_url(url)}: cannot open it: '
                       f'{shown_url(reason)}') from e


def bind_output_dir(output_dir, study_name, storage):
  """Records in `output_dir` the study whose trial folders it holds;
  refuses another study (its trial_NNNN folders would resume the first
  one's checkpoints). `storage`: the URL given (None: the folder's)."""
  owner = {'study_name': study_name,
           'storage': STUDY_FILE if storage is None else shown_url(storage)}
  path = os.path.join(output_dir, FOLDER_FILE)
  if os.path.exists(path):
    try:
      recorded = json.loads(io_utils.read_text(path, 'search folder file'))
    except ValueError:
      recorded = None
    if not isinstance(recorded, dict) or set(recorded) != set(owner):
      raise ValueError(f'{path} is damaged (it names the study of the '
                       'folder); remove it if the folder holds only one '
                       'study.')
    if recorded != owner:
      raise ValueError(
          f'{output_dir} holds the trials of study '
          f'{recorded["study_name"]!r} in {recorded["storage"]}, not of '
          f'{study_name!r} in {owner["storage"]}: give that study, or '
          'another --output_dir.')
    return
  os.makedirs(output_dir, exist_ok=True)
  io_utils.atomic_write(path, json.dumps(owner))


class ForeignDatabaseError(ValueError):
  """The storage database belongs to something else."""


def _refuse_foreign_database(url, engine_kwargs):
  """A database that holds tables but no Optuna study table belongs to
  something else: Optuna would add its tables to it."""
  database = sqlalchemy.create_engine(url, **engine_kwargs)
  try:
    tables = sqlalchemy.inspect(database).get_table_names()
  finally:
    database.dispose()
  if tables and 'studies' not in tables:
    raise ForeignDatabaseError(
        f'storage {shown_url(url)}: holds tables of something else '
        f'({", ".join(sorted(tables)[:5])}) and no Optuna study; it is left '
        'unchanged: give another database or file.')


def _rdb_storage(url, engine_kwargs, heartbeat, attempts=3):
  """RDBStorage, tried again after a database error: workers that start
  together race to create the schema, and all but one fail once."""
  for attempt in range(attempts):
    try:
      return optuna.storages.RDBStorage(
          url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
          grace_period=2 * heartbeat,
          heartbeat_stale_trial_callback=(
              optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)))
    except sqlalchemy.exc.SQLAlchemyError:
      if attempt == attempts - 1:
        raise
      time.sleep(1 + attempt)


def controller_reward(trial):
  """The RL controller's reward for a finished trial: its AP; for one the
  pruner stopped, the last AP it reported; 0 for a candidate over the
  FLOPs / latency budget or a NaN loss; None (no update) for other
  failures, which say nothing about the architecture."""
  state, attrs = trial.state, trial.user_attrs
  if state == optuna.trial.TrialState.COMPLETE:
    return trial.values[0]
  if attrs.get(OVER_BUDGET) or attrs.get('fail_reason', '').startswith(
      'NaN loss'):
    return 0.0
  if state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
    return trial.intermediate_values[max(trial.intermediate_values)]
  return None


def _dead_here(worker):
  """Whether `worker` ('host:pid') was a process of this host that ended."""
  host, _, pid = worker.rpartition(':')
  if host != socket.gethostname() or not pid.isdigit():
    return False
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return True
  except PermissionError:  # alive, another user's
    return False
  return False


def _reason(error):
  lines = str(error).strip().splitlines() or ['']
  return f'{type(error).__name__}: {lines[0][:500]}'


def counted(trials):
  """The trials that use the trial budget: all but waiting ones, the
  candidates refused, untrained, for the FLOPs / latency budget, and the
  trials of dead workers that were retried (their retry counts)."""
  retried = {t.system_attrs['failed_trial'] for t in trials
             if 'failed_trial' in t.system_attrs}
  return [t for t in trials
          if t.state != optuna.trial.TrialState.WAITING
          and not t.user_attrs.get(OVER_BUDGET) and t.number not in retried]


class Search:
  """One worker of a search in `output_dir`.

  Args:
    output_dir: the search folder (trials/, study.db, reports).
    space: a `SearchSpace`.
    proxy: a `proxy.Proxy`.
    sampler: 'tpe', 'random', 'nsga2' or 'rl' (the paper's RNN controller,
      `controller.ControllerSampler`; its state in
      controller_<study_name>.npz; AP only).
    objectives: 'ap', 'ap,flops' or 'ap,latency'.
    storage: an Optuna storage URL; None for output_dir/study.db.
    study_name: the study (created by the first worker, then shared).
    pruner: 'none', 'median', 'successive_halving' or 'hyperband' (AP
      reported at `reports_per_trial` evaluations; one objective only).
    max_gflops, max_latency_ms: candidates above are not trained (pruned,
      `over_budget`; they do not use the trial budget); after
      OVER_BUDGET_LIMIT of them in a row, `run` stops with a ValueError.
    seed: the study's seed, recorded by its first worker (another seed
      is refused): trial n is drawn from (seed, n), so workers started
      with one command draw distinct candidates; None: random draws (the
      study's seed if it has one).
  """

  def __init__(self, output_dir, space, proxy, sampler='tpe', objectives='ap',
               storage=None, study_name='spinenet_search', pruner='none',
               reports_per_trial=3, max_gflops=None, max_latency_ms=None,
               seed=None, startup_trials=None, heartbeat_seconds=60):
    self.output_dir, self.space, self.proxy = output_dir, space, proxy
    checks.choice('sampler', sampler, samplers.SAMPLERS)
    self.objectives = OBJECTIVES[checks.choice('objectives', objectives,
                                               tuple(OBJECTIVES))]
    if sampler == 'rl' and len(self.objectives) > 1:
      raise ValueError(f"sampler 'rl' rewards AP only; objectives is "
                       f'{objectives!r} (use nsga2).')
    if pruner != 'none' and len(self.objectives) > 1:
      raise ValueError(f'pruner {pruner!r}: Optuna prunes one-objective '
                       f'searches only; objectives is {objectives!r}.')
    self.reports_per_trial = checks.integer('reports_per_trial',
                                            reports_per_trial, 1)
    self.pruner_name = pruner
    self.budget = {
        'gflops': None if max_gflops is None else checks.number(
            'max_gflops', max_gflops, 0, low_open=True),
        'latency_ms': None if max_latency_ms is None else checks.number(
            'max_latency_ms', max_latency_ms, 0, low_open=True)}
    if sampler == 'rl' and isinstance(storage, str) and storage.startswith(
        'journal:'):
      raise ValueError("sampler 'rl' needs a database storage: with "
                       "journal: a dead worker's trial stays RUNNING and "
                       'the controller, which learns the trials in number '
                       'order, would wait on it for ever (use sqlite:///, '
                       'postgresql:// or mysql://).')
    if self.budget['latency_ms'] is not None and not proxy.latency_runs:
      raise ValueError('max_latency_ms needs latency_runs > 0.')
    if 'latency_ms' in self.objectives and not proxy.latency_runs:
      raise ValueError("objectives 'ap,latency' needs latency_runs > 0.")
    self.storage = open_storage(storage, output_dir, heartbeat_seconds)
    self.study_name = study_name
    bind_output_dir(output_dir, study_name, storage)
    self.study = self._open_study(sampler, seed, startup_trials)

  def _open_study(self, sampler, seed, startup_trials):
    directions = [DIRECTIONS[o] for o in self.objectives]
    study = optuna.create_study(
        storage=self.storage, study_name=self.study_name,
        directions=directions, load_if_exists=True,
        pruner=samplers.build_pruner(self.pruner_name))
    if study.directions != [optuna.study.StudyDirection[d.upper()]
                            for d in directions]:
      raise ValueError(f'study {self.study_name!r} exists with directions '
                       f'{[d.name.lower() for d in study.directions]}, not '
                       f'{directions} (objectives {self.objectives}).')
    seed = self._study_seed(study, seed)
    self._check_settings(study, {
        'sampler': sampler, 'startup_trials': startup_trials,
        'pruner': self.pruner_name,
        'reports_per_trial': self.reports_per_trial,
        'max_gflops': self.budget['gflops'],
        'max_latency_ms': self.budget['latency_ms'],
        **self.space.settings(), **self.proxy.settings()})
    if sampler == 'rl':
      if startup_trials is not None:
        raise ValueError("startup_trials is a TPE setting; sampler is 'rl'.")
      study.sampler = controller.ControllerSampler(
          self.space.parameters(), controller_reward,
          os.path.join(self.output_dir, f'controller_{self.study_name}.npz'),
          seed=seed, policy_seed=seed or 0)
    else:
      study.sampler = samplers.build_sampler(sampler, seed, startup_trials)
    return study

  def _study_seed(self, study, seed):
    """The study's seed: recorded by its first worker; a worker given
    another is refused, one given none takes the study's."""
    if seed is not None:
      checks.integer('seed', seed, 0)
    if 'seed' not in study.user_attrs:
      study.set_user_attr('seed', seed)
      return seed
    recorded = study.user_attrs['seed']
    if seed is not None and seed != recorded:
      started = 'without a seed' if recorded is None else (
          f'with seed {recorded}')
      raise ValueError(f'study {self.study_name!r} was started {started}; '
                       f'this worker has seed {seed} (give every worker the '
                       "same seed, or none to take the study's).")
    return recorded

  def _check_settings(self, study, settings):
    """Records `settings` on a study that has none; refuses a worker
    whose settings differ from the recorded ones, naming them: its
    trials would not be comparable with the study's."""
    settings = json.loads(json.dumps(settings))
    if 'settings' not in study.user_attrs:
      study.set_user_attr('settings', settings)
      return
    changed = results.differences(study.user_attrs['settings'], settings)
    if changed:
      raise ValueError(f'study {self.study_name!r} was started with other '
                       f'settings ({"; ".join(changed)}); give it the same '
                       'settings, or start another --study_name.')

  # The trial.

  def trial_dir(self, trial):
    """trials/trial_NNNN; a retried trial keeps its original folder."""
    if 'trial_dir' not in trial.user_attrs:
      trial.set_user_attr('trial_dir', f'trials/trial_{trial.number:04d}')
    return os.path.join(self.output_dir, trial.user_attrs['trial_dir'])

  def objective(self, trial):
    """Draws, measures, trains and scores one candidate."""
    keras.backend.clear_session()
    trial.set_user_attr('worker', worker_name())
    choices = {name: trial.suggest_int(name, 0, n - 1)
               for name, n in self.space.parameters()}
    try:
      return self._evaluate(trial, self.space.decode(choices))
    except optuna.TrialPruned:
      raise
    except NonFiniteLossError as e:
      trial.set_user_attr('fail_reason', f'NaN loss: {_reason(e)}')
      return tuple(math.nan for _ in self.objectives)
    except Exception as e:  # recorded on the trial, then the next one
      trial.set_user_attr('fail_reason', _reason(e))
      trial.set_user_attr('traceback', traceback.format_exc()[-4000:])
      raise

  def _evaluate(self, trial, block_specs):
    run_dir = self.trial_dir(trial)
    os.makedirs(run_dir, exist_ok=True)
    path = specs_lib.write_specs_yaml(
        block_specs, os.path.join(run_dir, report.CANDIDATE_FILE))
    config = self.proxy.config(path, self._sections())
    size = self.proxy.measure(config)
    measured = {'params': size['params'], 'gflops': size['flops'] / 1e9,
                'latency_ms': size['latency_ms']}
    for key, value in measured.items():
      trial.set_user_attr(key, value)
    for key, limit in self.budget.items():
      if limit is not None and measured[key] > limit:
        trial.set_user_attr(OVER_BUDGET, True)
        trial.set_user_attr('prune_reason', f'{key} {measured[key]:.4g} over '
                            f'the budget {limit:g}; not trained')
        raise optuna.TrialPruned(trial.user_attrs['prune_reason'])
    result = proxy_lib.train_and_evaluate(
        config, self.proxy.data_dir, run_dir, self._reporter(trial))
    for key in ('AP', 'AP50', 'seconds'):
      trial.set_user_attr(key, result[key])
    values = {**measured, 'AP': result['AP']}
    return tuple(values[o] for o in self.objectives)

  def _sections(self):
    if self.pruner_name == 'none':
      return {}
    return {'trainer': {'eval_interval': max(
        1, self.proxy.train_steps // self.reports_per_trial)}}

  def _reporter(self, trial):
    if self.pruner_name == 'none':
      return None

    def report(step, metrics):
      trial.report(metrics['AP'], step)
      if trial.should_prune():
        trial.set_user_attr('prune_reason', f'AP {metrics["AP"]:.4f} at step '
                            f'{step}')
        raise optuna.TrialPruned(trial.user_attrs['prune_reason'])
    return report

  def reference(self, name, train=True, log=print):
    """The proxy result of REFERENCES[name] (its references/<name>/
    result.json), trained here first if no worker has claimed it and
    `train`; None while another worker trains it, or when not `train`.

    The claim is a study of the storage (`REFERENCE_CLAIM`), created by
    exactly one worker; a claim whose worker is dead (on this host) is
    taken over once, through a second such study."""
    checks.choice('reference', name, tuple(REFERENCES))
    run_dir = os.path.join(self.output_dir, 'references', name)
    path = os.path.join(run_dir, 'result.json')
    model = dict(REFERENCES[name])
    config = self.proxy.config(model.pop('backbone'), {'model': model})
    result = results.read_result(path, config)
    if result is not None or not train:
      return result
    owner = self.claim(REFERENCE_CLAIM.format(study=self.study_name,
                                               name=name))
    if owner is not None:
      log(f'reference {name}: trained by {owner}; this worker goes on.')
      return None
    log(f'reference {name}: training it under the proxy in {run_dir}')
    size = self.proxy.measure(config)
    metrics = proxy_lib.train_and_evaluate(config, self.proxy.data_dir,
                                           run_dir)
    result = {'name': name, 'AP': metrics['AP'], 'AP50': metrics['AP50'],
              'gflops': size['flops'] / 1e9, 'params': size['params'],
              'latency_ms': size['latency_ms'], 'seconds': metrics['seconds']}
    os.makedirs(run_dir, exist_ok=True)
    results.write_result(path, result, config)
    return result

  def claim(self, claim_name):
    """None if this worker now holds the claim `claim_name`, else the
    worker that does."""
    try:
      claim = optuna.create_study(storage=self.storage, study_name=claim_name)
    except optuna.exceptions.DuplicatedStudyError:
      claim = optuna.load_study(study_name=claim_name, storage=self.storage)
      owner = claim.user_attrs.get('worker', 'a starting worker')
      if not _dead_here(owner):
        return owner
      return self.claim(f'{claim_name}:after:{owner}')
    claim.set_user_attr('worker', worker_name())
    return None

  # The loop.

  def counted_trials(self):
    """`counted` after failing (and queueing the retry of) the trials of
    dead workers: a worker started after a kill, while the others are
    busy, would count the dead trial as running and stop short."""
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
      optuna.storages.fail_stale_trials(self.study)
    return counted(self.study.get_trials(deepcopy=False))

  def run(self, n_trials, log=print, on_trial=None):
    """Runs trials until the study has `n_trials` counted trials (see
    `counted`); `on_trial(study, trial)` after each of this worker's."""
    n_trials = checks.integer('n_trials', n_trials, 1)
    start = time.time()
    if len(self.counted_trials()) >= n_trials:
      log(f'study {self.study_name!r} has {n_trials} trials already.')
      return

    over_budget = []  # this worker's over-budget trials in a row

    def after_trial(study, trial):
      log(self.progress_line(trial, n_trials, time.time() - start))
      if on_trial is not None:
        on_trial(study, trial)
      over_budget[:] = (over_budget + [trial]
                        if trial.user_attrs.get(OVER_BUDGET) else [])
      if (len(over_budget) >= OVER_BUDGET_LIMIT
          or len(self.counted_trials()) >= n_trials):
        study.stop()

    self.study.optimize(self.objective, callbacks=[after_trial],
                        catch=(Exception,), gc_after_trial=True)
    if len(over_budget) >= OVER_BUDGET_LIMIT:
      raise ValueError(self._over_budget_line(over_budget))

  def _over_budget_line(self, trials):
    limits = [f'max_{key} {limit:g} (smallest drawn '
              f'{min(t.user_attrs[key] for t in trials):.4g})'
              for key, limit in self.budget.items() if limit is not None]
    return (f'{len(trials)} candidates in a row were over the budget, '
            f'{", ".join(limits)}: the budget is likely below every '
            'candidate of this space; raise it.')

  def progress_line(self, trial, n_trials, elapsed):
    """'trial 3 of 30 (#2) COMPLETE: AP ... | best ... | ETA ...'."""
    trials = self.counted_trials()
    done = [t for t in trials if t.state.is_finished()]
    text = f'trial {len(done)} of {n_trials} (#{trial.number}) ' + (
        f'{trial.state.name}')
    attrs = trial.user_attrs
    if 'AP' in attrs:
      text += f': AP {attrs["AP"]:.4f}'
    if 'gflops' in attrs:
      text += f', {attrs["gflops"]:.3f} GFLOPs'
    reason = attrs.get('fail_reason') or attrs.get('prune_reason')
    if reason:
      text += f' ({reason[:120]})'
    scored = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    if scored:
      best = max(scored, key=lambda t: t.user_attrs['AP'])
      text += f' | best AP {best.user_attrs["AP"]:.4f} (#{best.number})'
    seconds = [t.duration.total_seconds() for t in done if t.duration]
    running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
    if seconds:
      eta = (statistics.median(seconds) * (n_trials - len(done))
             / (running + 1))  # the others and this worker
      text += f' | ETA {eta / 60:.1f} min'
    return text + f' | {elapsed / 60:.1f} min in this worker'
