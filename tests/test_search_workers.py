"""The search as users run it on many machines: scripts/search.py started
once per worker, all on one Optuna study, real (tiny, --quick) training.

- SQLite: 2 workers share a 3-trial study in one folder; one is killed
  with SIGKILL in mid-trial and started again. Its trial ends FAIL (no
  heartbeat), is retried once in the same folder, and the study ends with
  3 complete trials, a Pareto plot and the best candidate as a spec file.
- PostgreSQL: a server this test starts on localhost (Debian's postgresql,
  installed by scripts/test.sh) holds a 2-trial study that 2 workers share;
  each worker completes one trial.
"""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pytest
import sqlalchemy

from spinenet_tf.models.backbone import build_backbone
from spinenet_tf.search import engine, report

ROOT = os.path.join(os.path.dirname(__file__), '..')
# A whole test's time for its workers, under pytest's --timeout=1200 (a
# quick trial: ~70 s alone on 2 cores, ~3 min shared), so that a stuck
# worker fails with the logs rather than pytest's timeout.
TEST_SECONDS = 1000
# Heartbeats every 3 s: a trial is stale 6 s after its worker died.
HEARTBEAT = 3


def start_worker(output_dir, data_dir, log_path, seed, storage=None,
                 n_trials=3):
  command = [sys.executable, os.path.join(ROOT, 'scripts', 'search.py'),
             f'--output_dir={output_dir}', f'--data_dir={data_dir}',
             f'--n_trials={n_trials}', '--quick', '--sampler=random',
             f'--seed={seed}', '--latency_runs=0',
             '--top_k=1', f'--heartbeat_seconds={HEARTBEAT}']
  if storage:
    command.append(f'--storage={storage}')
  with open(log_path, 'a') as log:
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT)


def wait_for(condition, what, deadline):
  while time.time() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(1)
  raise AssertionError(f'timed out waiting for {what}')


def finish(workers, logs, deadline):
  """Waits for every worker until `deadline`; asserts each exited 0 (the
  end of its log otherwise)."""
  for worker in workers:
    try:
      worker.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
      pass
  for worker, log in zip(workers, logs):
    if worker.poll() is None:
      worker.kill()
      worker.wait()
    with open(log) as f:
      assert worker.returncode == 0, f.read()[-4000:]


def load_trials(storage):
  return optuna.load_study(study_name='spinenet_search',
                           storage=storage).get_trials()


def test_two_workers_share_a_sqlite_study_and_survive_a_sigkill(tmp_path):
  output_dir, data_dir = str(tmp_path / 'search'), str(tmp_path / 'data')
  os.makedirs(output_dir)
  storage = f'sqlite:///{output_dir}/study.db'
  logs = [str(tmp_path / 'worker_a.log'), str(tmp_path / 'worker_b.log')]
  deadline = time.time() + TEST_SECONDS
  # One command on every worker, as README deploys it (the same --seed).
  victim = start_worker(output_dir, data_dir, logs[0], seed=7)
  other = start_worker(output_dir, data_dir, logs[1], seed=7)

  def victim_trial_training():
    if not os.path.exists(f'{output_dir}/study.db'):
      return None
    try:  # the first worker creates the file, the schema, then the study
      trials = load_trials(storage)
    except (KeyError, sqlalchemy.exc.SQLAlchemyError):
      return None
    for trial in trials:
      run_dir = os.path.join(output_dir, trial.user_attrs.get('trial_dir', '-'))
      if (trial.state.name == 'RUNNING'
          and trial.user_attrs.get('worker', '').endswith(f':{victim.pid}')
          and os.path.isdir(os.path.join(run_dir, 'train'))):
        return trial
    return None

  try:
    killed = wait_for(victim_trial_training, "worker A's trial training",
                      deadline)
  except BaseException:
    victim.kill()
    other.kill()
    raise
  victim.send_signal(signal.SIGKILL)
  victim.wait()
  # Past the grace period (2 heartbeats), as a restart after a crash would
  # be: a worker started sooner counts the dead trial as still running.
  time.sleep(2 * HEARTBEAT + 2)
  restarted = start_worker(output_dir, data_dir, logs[0], seed=7)
  finish([other, restarted], logs, deadline)

  trials = {t.number: t for t in load_trials(storage)}
  dead = trials[killed.number]
  assert dead.state.name == 'FAIL'
  retries = [t for t in trials.values()
             if t.system_attrs.get('failed_trial') == killed.number]
  assert len(retries) == 1, trials
  retry = retries[0]
  assert retry.state.name == 'COMPLETE'
  assert retry.params == dead.params
  assert retry.user_attrs['trial_dir'] == dead.user_attrs['trial_dir']
  complete = [t for t in trials.values() if t.state.name == 'COMPLETE']
  assert len(complete) == 3 and len(trials) == 4
  # Distinct candidates, though every worker had the same seed.
  assert len({tuple(sorted(t.params.items())) for t in complete}) == 3
  assert all(0 <= t.values[0] <= 1 for t in complete)
  assert len({t.user_attrs['worker'] for t in complete}) >= 2
  # The folder's outputs, written by the last worker to stop.
  with open(os.path.join(output_dir, 'trials.csv')) as f:
    rows = f.read().splitlines()
  assert len(rows) == 1 + 4
  dead_row = report.trial_row(dead)
  assert dead_row['reason'] == report.NO_REASON
  assert report.trial_row(retry)['retry_of'] == killed.number
  best = os.path.join(output_dir, 'top', 'rank1.yaml')
  backbone = build_backbone(best, (128, 128, 3), filter_size_scale=0.25)
  assert sorted(backbone.output_specs) == ['3', '4', '5', '6', '7']
  assert os.path.getsize(os.path.join(output_dir, 'pareto.png')) > 0
  assert len(engine.counted(list(trials.values()))) == 3


def _postgres_bin():
  found = shutil.which('initdb')
  if found:
    return os.path.dirname(found)
  versions = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'))
  return os.path.dirname(versions[-1]) if versions else None


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.fixture
def postgres_url():
  """A PostgreSQL server on a free localhost port, trust auth, stopped and
  removed at the end; run as the user 'postgres' when this test runs as
  root (its folder is outside pytest's, which only root may enter)."""
  bin_dir = _postgres_bin()
  if bin_dir is None:
    pytest.skip('no PostgreSQL server binaries (initdb): scripts/test.sh '
                'installs the postgresql package')
  as_user = []
  if os.geteuid() == 0:
    try:
      pwd.getpwnam('postgres')
    except KeyError:
      pytest.skip('running as root and no user postgres to run the server')
    as_user = ['runuser', '-u', 'postgres', '--']
  data = tempfile.mkdtemp(prefix='spinenet_pg_')
  if as_user:
    shutil.chown(data, 'postgres', 'postgres')
  port = _free_port()
  ctl = as_user + [f'{bin_dir}/pg_ctl', '-D', data, '-w']
  try:
    subprocess.run(as_user + [f'{bin_dir}/initdb', '-D', data, '-A', 'trust',
                              '-U', 'postgres'], check=True,
                   capture_output=True)
    subprocess.run(ctl + ['-l', f'{data}/server.log', '-o',
                          f'-p {port} -k {data} -c listen_addresses=localhost',
                          'start'], check=True, capture_output=True)
    yield f'postgresql://postgres@localhost:{port}/postgres'
  finally:
    subprocess.run(ctl + ['-m', 'fast', 'stop'], capture_output=True)
    shutil.rmtree(data, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, postgres_url):
  output_dir, data_dir = str(tmp_path / 'search'), str(tmp_path / 'data')
  logs = [str(tmp_path / f'worker_{i}.log') for i in range(2)]
  deadline = time.time() + TEST_SECONDS
  workers = [start_worker(output_dir, data_dir, log, seed=7,
                          storage=postgres_url, n_trials=2)
             for log in logs]
  finish(workers, logs, deadline)
  trials = load_trials(postgres_url)
  assert [t.state.name for t in trials] == ['COMPLETE', 'COMPLETE']
  assert trials[0].params != trials[1].params
  assert {t.user_attrs['worker'].split(':')[1] for t in trials} == {
      str(w.pid) for w in workers}
  assert not os.path.exists(os.path.join(output_dir, 'study.db'))


@pytest.mark.parametrize('args, expected', [
    ([], 'error: --output_dir is required.'),
    (['--storage=study.db'], "error: storage must be a database URL "
     "(sqlite:///..., postgresql://...) or journal:<file>, got 'study.db'."),
    (['--storage=postgresql://me:secret@localhost:1/db'],
     'error: storage postgresql://me:***@localhost:1/db: cannot open it: '),
    (['--storage=postgresql://me@localhost:1/db?password=secret'],
     'error: storage postgresql://me@localhost:1/db?password=***: cannot '
     'open it: '),
    (['--sampler=rl', '--objectives=ap,flops'],
     "error: sampler 'rl' rewards AP only; objectives is 'ap,flops' (use "
     'nsga2).'),
    (['--sampler=random', '--startup_trials=3'],
     "error: startup_trials is a TPE setting; sampler is 'random'."),
    (['--sampler=rl', '--storage=journal:j.log'],
     "error: sampler 'rl' needs a database storage: with journal: a dead "
     "worker's trial stays RUNNING"),
])
def test_a_bad_search_command_is_one_error_line(tmp_path, args, expected):
  if args:
    args = [f'--output_dir={tmp_path}', *args]
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'search.py'), *args],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode != 0 and 'Traceback' not in result.stderr, (
      result.stderr[-3000:])
  last = result.stderr.rstrip().splitlines()[-1]
  assert last.startswith(expected), result.stderr[-3000:]
  assert 'secret' not in result.stderr


def test_report_only_refuses_an_unknown_study_and_changes_nothing(tmp_path):
  # Before: a mistyped --study_name created an empty study and overwrote
  # trials.csv, top.csv and pareto.png with empty ones.
  storage = f'sqlite:///{tmp_path}/study.db'
  optuna.create_study(storage=storage, study_name='spinenet_search')
  (tmp_path / 'trials.csv').write_text('the earlier report\n')
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'search.py'),
       f'--output_dir={tmp_path}', '--report_only',
       '--study_name=spinenet_serach'],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert result.returncode == 1, result.stderr[-3000:]
  assert result.stderr.rstrip().splitlines()[-1] == (
      "error: no study 'spinenet_serach' in the storage; its studies: "
      "['spinenet_search'].")
  assert optuna.get_all_study_names(storage) == ['spinenet_search']
  assert (tmp_path / 'trials.csv').read_text() == 'the earlier report\n'
