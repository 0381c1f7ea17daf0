"""TFDS dataset names: 'imagenet2012:5.1.0' and 'emnist/letters' -> base name."""


def base_name(name, known, example):
  """The dataset name without config and version; ValueError unless known.

  `example` shows the accepted form in the error message.
  """
  base = name.split('/')[0].split(':')[0]
  if base not in known:
    raise ValueError(f'name must be one of {list(known)} (with an optional '
                     f'config or version, e.g. "{example}"), got {name!r}.')
  return base
