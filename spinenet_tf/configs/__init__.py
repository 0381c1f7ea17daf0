"""The shipped experiment configs, installed with the package:

    from spinenet_tf import configs
    configs.names()                          # ['classification_...', ...]
    configs.path('demo_retinanet_synthetic')  # .../spinenet_tf/configs/...yaml
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
SUFFIX = '.yaml'


def names():
  """The experiment names (file names without .yaml), sorted."""
  return sorted(n[:-len(SUFFIX)] for n in os.listdir(DIRECTORY)
                if n.endswith(SUFFIX))


def path(name):
  """The YAML file of experiment `name`; ValueError listing the names."""
  if name not in names():
    raise ValueError(f'unknown experiment {name!r}; shipped experiments: '
                     f'{", ".join(names())}.')
  return os.path.join(DIRECTORY, name + SUFFIX)
