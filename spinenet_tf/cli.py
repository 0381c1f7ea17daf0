"""Command-line boundaries: a user error is one line `error: ...`.

    from spinenet_tf import cli
    if __name__ == '__main__':
      cli.run(main)             # absl: flags, then main(argv)

A user error (bad flag, config, file, data, checkpoint: ValueError,
TypeError, OSError, absl's UsageError, yaml errors, TensorFlow's OpError,
a stopped run) prints `error: <message>` on one line to stderr and exits
with status 1 (2 for flag errors). `--verbose` shows the Python traceback
instead. Anything else is a bug and keeps its traceback.
"""

import sys

from absl import app, flags

flags.DEFINE_bool('verbose', False,
                  'On an error, show the Python traceback, not one line.')

FLAG_ERROR_STATUS = 2


class UserError(Exception):
  """An error in what the user gave: printed as one line by `run`."""


def _user_error_types():
  types = [UserError, ValueError, TypeError, OSError, ArithmeticError,
           app.UsageError, flags.Error]
  for module, name in (('yaml', 'YAMLError'), ('tensorflow', 'errors')):
    loaded = sys.modules.get(module)
    if loaded is not None:
      found = getattr(loaded, name)
      types.append(found.OpError if module == 'tensorflow' else found)
  return tuple(types)


def is_user_error(error):
  return isinstance(error, _user_error_types())


def one_line(error):
  """The message of `error` on one line (TensorFlow's op traces removed)."""
  text = getattr(error, 'message', None) or str(error) or type(error).__name__
  if 'assertion failed: [' in text:  # our tf.debugging.Assert messages
    text = text.split('assertion failed: [', 1)[1].split(']\n', 1)[0]
    text = text[:-1] if text.endswith(']') else text
  kept, in_trace = [], False
  for line in text.splitlines():
    stripped = line.strip()
    if stripped.startswith('Detected at node'):
      in_trace = True
    elif in_trace and not stripped:
      in_trace = False
    elif not in_trace and stripped and not stripped.startswith('[['):
      kept.append(stripped)
  kept = [k for k in kept if k != 'Graph execution error:'] or kept
  return ' '.join(kept)


def exit_with(error, status=1):
  """Prints `error: ...` and exits with `status`."""
  print(f'error: {one_line(error)}', file=sys.stderr, flush=True)
  sys.exit(status)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    exit_with(e, FLAG_ERROR_STATUS)


def guarded(main):
  """`main` with user errors turned into one line (unless --verbose)."""
  def run_main(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      verbose = '--verbose' in sys.argv or (flags.FLAGS.is_parsed()
                                            and flags.FLAGS.verbose)
      if verbose or not is_user_error(e):
        raise
      exit_with(e)
  return run_main


def refuse_arguments(argv):
  """A UserError if absl left positional arguments after the program name
  (every option of our commands is a --flag)."""
  if len(argv) > 1:
    raise UserError(f'unexpected arguments {argv[1:]}; every option is a '
                    '--flag.')


def run(main, argv=None, doc=None):
  """absl's app.run(main) with one-line flag and user errors; `doc`: the
  usage text of --help (absl shows the __main__ module's docstring, which
  an installed command's generated launcher lacks)."""
  if doc is not None:
    sys.modules['__main__'].__doc__ = doc
  app.run(guarded(main), argv=argv, flags_parser=_parse_flags)
