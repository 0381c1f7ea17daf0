"""The console progress line: throttled, always at the last step, with ETA."""
import io
import time

from spinenet_tf.training.progress import Progress


def test_lines_are_throttled_and_the_last_step_always_prints():
  stream = io.StringIO()
  progress = Progress(total_steps=30, step=10, interval=3600, stream=stream)
  progress.update(20, {'total_loss': 0.5})
  assert stream.getvalue() == ''  # within the interval
  progress.update(30, {'total_loss': 0.25, 'images/s': 12.0})
  line = stream.getvalue()
  assert line.startswith('step 30/30 (100%)  total_loss 0.25  images/s 12')
  assert 'took ' in line


def test_eta_from_the_speed_after_the_first_line(monkeypatch):
  clock = iter([0.0, 60.0, 70.0])  # the first line comes after tracing
  monkeypatch.setattr(time, 'perf_counter', lambda: next(clock))
  stream = io.StringIO()
  progress = Progress(total_steps=1000, step=0, interval=0, stream=stream)
  progress.update(10, {})
  progress.update(110, {})  # 100 steps in 10 s
  assert stream.getvalue().splitlines() == [
      'step 10/1000 (1%)', 'step 110/1000 (11%)  ETA 1m29s']


def test_disabled_progress_prints_nothing():
  stream = io.StringIO()
  Progress(total_steps=1, interval=0, stream=stream, enabled=False).update(
      1, {'loss': 1.0})
  assert stream.getvalue() == ''
