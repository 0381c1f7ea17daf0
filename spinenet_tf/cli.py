"""Command-line boundaries: a user error is one line `error: ...`.

    from spinenet_tf import cli
    if __name__ == '__main__':
      cli.run(main)             # absl: flags, then main(argv)

A user error prints `error: <message>` on one line to stderr and exits
with status 1 (2 for flag errors); `--verbose` shows the traceback instead.
User errors are what this project raises about the user's input (a
`raise` of ValueError, TypeError or ArithmeticError, e.g. a NaN loss, in
spinenet_tf's own code; `UserError`; absl's flag errors), a YAML file that
does not parse, the
file system's errors (OSError; TensorFlow's NotFound, PermissionDenied,
AlreadyExists, DataLoss, ResourceExhausted) and the in-graph checks of the
input pipeline (`tf.debugging.Assert`). Anything else is a bug: its
traceback is shown, then a line that says so.
"""

import linecache
import os
import sys
import traceback

from absl import app, flags

flags.DEFINE_bool('verbose', False,
                  'On an error, show the Python traceback, not one line.')

FLAG_ERROR_STATUS = 2


class UserError(Exception):
  """An error in what the user gave: printed as one line by `run`."""


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# TensorFlow errors about files, data and memory: the user's environment.
TF_USER_ERRORS = ('NotFoundError', 'PermissionDeniedError',
                  'AlreadyExistsError', 'DataLossError',
                  'ResourceExhaustedError')
BUG_LINE = ('error: the traceback above is a bug in spinenet_tf, not in '
            'your input; please report it with the traceback.')


def _raised_by_this_project(error):
  """Whether `error` comes from a `raise` statement in spinenet_tf's own
  code (not from a library it called, nor a failed operation of ours)."""
  tb = error.__traceback__
  if tb is None:
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
  return (filename.startswith(PACKAGE_DIR) and
          linecache.getline(filename, tb.tb_lineno).strip().startswith(
              'raise'))


def is_user_error(error):
  """Whether `error` is about the user's input (see the module doc)."""
  if isinstance(error, (UserError, app.UsageError, flags.Error, OSError)):
    return True
  yaml = sys.modules.get('yaml')
  if yaml is not None and isinstance(error, yaml.YAMLError):
    return True
  tf = sys.modules.get('tensorflow')
  if tf is not None and isinstance(error, tf.errors.OpError):
    return (type(error).__name__ in TF_USER_ERRORS
            or 'assertion failed: [' in (error.message or ''))
  return (isinstance(error, (ValueError, TypeError, ArithmeticError))
          and _raised_by_this_project(error))


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
      if verbose:
        raise
      if not is_user_error(e):
        traceback.print_exc()
        print(BUG_LINE, file=sys.stderr, flush=True)
        sys.exit(1)
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
