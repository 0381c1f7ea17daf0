"""Shared test set-up: quiet TensorFlow, deterministic seeds."""
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
  keras.utils.set_random_seed(0)
  yield



SLOW_SECONDS = 60  # a test slower than this is named as it ends
_session = {}


def pytest_sessionstart(session):
  _session['start'] = time.time()
  _session['terminal'] = session.config.pluginmanager.get_plugin(
      'terminalreporter')


def pytest_runtest_logreport(report):
  """Names slow tests as they end, with the session's elapsed minutes, so
  a CI run cut off by its time limit still shows where its time went."""
  terminal = _session.get('terminal')
  if report.when == 'call' and report.duration > SLOW_SECONDS and terminal:
    minutes = (time.time() - _session['start']) / 60
    terminal.write_line(f'[slow: {report.duration:.0f} s, {minutes:.1f} min '
                        f'in] {report.nodeid} {report.outcome}')
    terminal.flush()
