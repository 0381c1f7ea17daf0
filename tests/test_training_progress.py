"""The console progress line: throttled, always at the last step, with ETA."""
import io

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


def test_eta_from_the_speed_of_this_run():
  stream = io.StringIO()
  progress = Progress(total_steps=1000, step=0, interval=0, stream=stream)
  progress._start -= 10.0  # pretend 10 s went by for the first 100 steps
  progress.update(100, {})
  assert stream.getvalue().strip() == 'step 100/1000 (10%)  ETA 1m30s'


def test_disabled_progress_prints_nothing():
  stream = io.StringIO()
  Progress(total_steps=1, interval=0, stream=stream, enabled=False).update(
      1, {'loss': 1.0})
  assert stream.getvalue() == ''
