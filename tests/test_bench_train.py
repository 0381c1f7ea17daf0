"""benchmarks.train_speed (scripts/train_speed.py) runs both
training steps and reports sane rows (tiny setting: SpineNet-49S at
128x128, batch 2, one warm-up and one timed step, a profiler trace; no
timing assertions)."""
import math

from benchmarks import train_speed

KEYS = {'name', 'ours', 'model_garden', 'unit', 'ratio', 'notes',
        'seconds_per_step', 'cpu_seconds_per_step', 'trace_s',
        'first_call_s', 'trainable_params', 'last_loss'}


def test_measure_rows():
  rows = train_speed.measure(image_size=128, batch_size=2, steps=1, warmup=1,
                             model_id='49S', profile_ops=True)
  assert len(rows) == 1
  row = rows[0]
  assert KEYS <= set(row)
  assert row['unit'] == 'images/s'
  for key in ('ours', 'model_garden', 'ratio'):
    assert math.isfinite(row[key]) and row[key] > 0, (key, row[key])
  for key in ('seconds_per_step', 'trace_s', 'first_call_s', 'last_loss'):
    for side in ('ours', 'model_garden'):
      assert math.isfinite(row[key][side]) and row[key][side] > 0, (key, side)
  # The same architecture on both sides.
  params = row['trainable_params']
  assert params['ours'] == params['model_garden']
  # Both run the same convolution ops (the profile's op types).
  ops = row['op_seconds']
  assert 'Conv2D' in ''.join(ops['ours']) and 'Conv2D' in ''.join(
      ops['model_garden'])
  assert all(v >= 0 for side in ops.values() for v in side.values())
  assert train_speed.table(rows).count('\n| ') >= 5
