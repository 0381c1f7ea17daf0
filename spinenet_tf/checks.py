"""Argument checks shared by the builders: a wrong type or range raises
ValueError naming the argument and saying what it takes."""

import numbers


def _fail(name, expected, value):
  raise ValueError(f'{name} must be {expected}, got {value!r}.')


def integer(name, value, minimum=None):
  """`value` as an int >= minimum (bools are refused)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    _fail(name, 'an integer' + (f' >= {minimum}' if minimum is not None
                                else ''), value)
  if minimum is not None and value < minimum:
    _fail(name, f'an integer >= {minimum}', value)
  return int(value)


def number(name, value, low=None, high=None, low_open=False, high_open=False):
  """`value` as a float in the interval given by low/high (open ends where
  asked); bools and strings are refused."""
  left = '(' if low_open else '['
  right = ')' if high_open else ']'
  interval = (f' in {left}{"-inf" if low is None else low}, '
              f'{"inf" if high is None else high}{right}')
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    _fail(name, 'a number' + interval, value)
  given, value = value, float(value)
  too_low = low is not None and (value <= low if low_open else value < low)
  too_high = high is not None and (value >= high if high_open
                                   else value > high)
  if too_low or too_high or value != value:
    _fail(name, 'a number' + interval, given)
  return value


def boolean(name, value):
  if not isinstance(value, bool):
    _fail(name, 'true or false', value)
  return value


def choice(name, value, choices):
  if value not in choices:
    _fail(name, f'one of {list(choices)}', value)
  return value


def image_shape(name, value):
  """`value` as a (height, width, channels) tuple of ints or None."""
  if (isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple))
      or len(value) != 3 or not all(
          d is None or (isinstance(d, numbers.Integral)
                        and not isinstance(d, bool) and d > 0)
          for d in value)):
    _fail(name, '(height, width, channels) of positive integers or None',
          value)
  return tuple(value)
