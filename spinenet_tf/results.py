"""A run's result.json, stored with the config that produced it.

    write_result(path, {'AP': 0.31}, config)
    result = read_result(path, config)   # None if absent

A result is reused only for the config that produced it: `read_result`
compares the stored config (every key, dotted) with the one asked for and
refuses a difference, naming the keys, rather than reuse a number that
answers another question.
"""

import json

import tensorflow as tf

from spinenet_tf.io_utils import atomic_write

CONFIG_KEY = 'config'  # in result.json: the producing config, flattened


def flatten(mapping):
  """{'section.key': value} of a nested mapping, as JSON keeps it."""
  flat = {}

  def walk(prefix, value):
    if isinstance(value, dict) and value:
      for key, item in value.items():
        walk(f'{prefix}.{key}', item)
    else:
      flat[prefix] = value
  for key, value in json.loads(json.dumps(mapping)).items():
    walk(str(key), value)
  return flat


def flat_config(config):
  """{'section.key': value} of an ExperimentConfig, as JSON keeps it."""
  return flatten(config.as_dict())


def differences(recorded, current, shown=5):
  """'key: recorded -> current' for up to `shown` differing keys."""
  keys = sorted(k for k in set(recorded) | set(current)
                if recorded.get(k) != current.get(k))
  lines = [f'{k}: {recorded.get(k, "(unset)")!r} -> '
           f'{current.get(k, "(unset)")!r}' for k in keys[:shown]]
  if len(keys) > shown:
    lines.append(f'and {len(keys) - shown} more')
  return lines


def write_result(path, result, config):
  """result.json at `path`: `result` and the flattened `config`."""
  atomic_write(path, json.dumps({**result, CONFIG_KEY: flat_config(config)},
                                indent=2))


def read_result(path, config):
  """The result at `path` (without its config), None if there is none; a
  ValueError naming the differing keys if another config produced it."""
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    result = json.load(f)
  recorded = result.pop(CONFIG_KEY, None)
  if recorded is None:
    raise ValueError(f'{path}: records no config (written by an earlier '
                     'version); remove its folder to train it again.')
  changed = differences(recorded, flat_config(config))
  if changed:
    raise ValueError(f'{path} was produced by another config ('
                     f'{"; ".join(changed)}); remove its folder to train it '
                     'again, or use another output folder.')
  return result
