"""Where the time goes: a TF profiler trace of a function, summed by op
type, and the top op types of ours and Model Garden's side by side, so a
regression is found in minutes (`--profile_ops` of benchmark.py,
bench_export.py and bench_train.py)."""
import collections
import glob
import os
import tempfile

TOP_OPS = 15


def _wait(value):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  for t in tf.nest.flatten(value):
    t.numpy()


def op_seconds(fn, num_calls=2):
  """{TF op type: thread seconds per call} of a profiler trace of
  `num_calls` calls of `fn()`, most expensive first. Thread seconds add up
  the time of ops that run at once, so they can exceed the wall time."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    for _ in range(num_calls):
      _wait(fn())
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    (path,) = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'),
                        recursive=True)
    with open(path, 'rb') as f:
      space.ParseFromString(f.read())
  seconds = collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith('/host:CPU'):
      continue
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        op_name, _, op_type = name.rpartition(':')
        # 'op_name:OpType' events are TF ops ('Scope::Event' and whole
        # functions ('...: __inference_...') are not).
        if op_name and not op_name.endswith(':') and op_type.isidentifier():
          seconds[op_type] += event.duration_ps / 1e12
  return {k: v / num_calls for k, v in seconds.most_common()}


def top_ops_table(title, ours, model_garden, count=TOP_OPS):
  """Markdown: each side's `count` most expensive op types (ms of thread
  time per call), ranked side by side, with each side's total."""
  ranked = [list(side.items())[:count] for side in (ours, model_garden)]
  lines = [f'{title}: top {count} TF op types by thread time per call '
           '(TF profiler; ms).', '',
           '| rank | ours | ms | Model Garden | ms |', '|---|---|---:|---|---:|']
  for rank in range(max(map(len, ranked))):
    cells = []
    for side in ranked:
      op, seconds = side[rank] if rank < len(side) else ('', None)
      cells += [op, '' if seconds is None else f'{1000 * seconds:.1f}']
    lines.append(f'| {rank + 1} | ' + ' | '.join(cells) + ' |')
  lines.append(f'| all | | {1000 * sum(ours.values()):.1f} | | '
               f'{1000 * sum(model_garden.values()):.1f} |')
  return '\n'.join(lines)
