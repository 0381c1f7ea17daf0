"""Console progress of a training run that also shows in logs and pipes.

    progress = Progress(total_steps=1000, step=0)
    progress.update(10, {'total_loss': 0.8, 'images/s': 45.0})

prints, at most every `interval` seconds and at the last step, a line like
`step 10/1000 (1%)  total_loss 0.8000  images/s 45.0  ETA 3m40s`.
"""

import sys
import time


def _duration(seconds):
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  if hours:
    return f'{hours}h{minutes:02d}m'
  return f'{minutes}m{seconds:02d}s' if minutes else f'{seconds}s'


class Progress:
  """Step, values and ETA (from the mean speed since the first line, so
  that tracing and compilation before it do not count)."""

  def __init__(self, total_steps, step=0, interval=10.0, stream=None,
               enabled=True):
    self.total_steps = total_steps
    self.first_step = step
    self.interval = interval
    self.stream = stream or sys.stdout
    self.enabled = enabled
    self._start = self._last = time.perf_counter()
    self._baseline = None  # (time, step) of the first line

  def update(self, step, values):
    now = time.perf_counter()
    done = step >= self.total_steps
    if not self.enabled or (now - self._last < self.interval and not done):
      return
    self._last = now
    parts = [f'step {step}/{self.total_steps} '
             f'({100 * step // max(self.total_steps, 1)}%)']
    parts += [f'{name} {value:.4g}' for name, value in values.items()]
    if done:
      parts.append(f'took {_duration(now - self._start)}')
    elif self._baseline is not None:
      then, first = self._baseline
      seconds_per_step = (now - then) / max(step - first, 1)
      parts.append(f'ETA {_duration((self.total_steps - step) * seconds_per_step)}')
    if self._baseline is None:  # the speed counts from here: no tracing
      self._baseline = (now, step)
    print('  '.join(parts), file=self.stream, flush=True)
