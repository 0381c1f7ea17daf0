"""A model config read from a YAML file, as export and predict take it.

    config = load_config('retinanet.yaml')
    model = build_model_from_config(config)   # spinenet_tf.models.factory
    load_checkpoint(model, 'model.weights.h5')   # spinenet_tf.checkpoints

The file holds the task and model sections of `models.factory`'s layout;
a training experiment file (spinenet_tf/configs/*.yaml, a run's
params.yaml) works too: its other sections are ignored.
"""

import yaml

from spinenet_tf import io_utils
from spinenet_tf.models.factory import TRAINING_SECTIONS, check_config


def load_config(path):
  """Reads a YAML model config, or the task and model of a training
  experiment file (spinenet_tf/configs/*.yaml, a run's params.yaml);
  errors name the file."""
  text = io_utils.read_text(path, 'config file')
  try:
    config = yaml.safe_load(text)
    if isinstance(config, dict) and set(config) & TRAINING_SECTIONS:
      config = {k: v for k, v in config.items()
                if k not in TRAINING_SECTIONS}
    check_config(config)
  except (yaml.YAMLError, ValueError) as e:
    raise ValueError(f'{path}: {e}') from e
  return config
