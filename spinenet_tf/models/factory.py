"""A model from a small config dict: the task and model sections of an
experiment, as the trainer, the exporter and the search build it.

    model = build_model_from_config({'task': 'detection', 'model': {
        'backbone': '49', 'input_size': 640, 'num_classes': 91}})

    task: detection          # or classification
    model:
      type: retinanet        # detection: a key of DETECTORS (retinanet, the
                             # default, or maskrcnn)
      backbone: '49'         # a build_backbone model id or a block-spec YAML
      input_size: 640        # or [height, width]; sides divisible by 128
      num_classes: 91        # detection: background slot 0 included
      # Any other keyword of the detector's builder (build_retinanet:
      # min_level, max_level, num_convs, num_filters, activation,
      # score_threshold, max_detections, backbone_kwargs, ...) or of
      # build_classifier (level, dropout_rate, head, activation, ...).

A detector plugs in by an entry in DETECTORS: the trainer, the JAX step and
the export then reach it through the `models.detector.Detector` protocol.
"""

import collections

from spinenet_tf.models import maskrcnn, retinanet
from spinenet_tf.models.classifier import build_classifier

TASKS = ('detection', 'classification')
REQUIRED = ('backbone', 'input_size', 'num_classes')

# A detector kind: build(backbone, num_classes, input_shape, **options)
# returns a `model_class` (a `Detector`); `options`: its keyword defaults,
# the config keys it takes besides the builder's own parameters.
DetectorType = collections.namedtuple('DetectorType',
                                      'build model_class options')
DETECTORS = {
    'retinanet': DetectorType(retinanet.build_retinanet, retinanet.RetinaNet,
                              retinanet.DEFAULTS),
    'maskrcnn': DetectorType(maskrcnn.build_maskrcnn, maskrcnn.MaskRCNN,
                             maskrcnn.DEFAULTS),
}
DEFAULT_DETECTOR = 'retinanet'


def detector_type(model):
  """The `DetectorType` a detection config's model section names
  (model.type; RetinaNet when absent)."""
  name = model.get('type', DEFAULT_DETECTOR)
  if name not in DETECTORS:
    raise ValueError(f'model.type must be one of {sorted(DETECTORS)}, got '
                     f'{name!r}.')
  return DETECTORS[name]
# The other sections of a training experiment file (the fields of
# training.config.ExperimentConfig besides task and model; a test keeps them
# equal): a model config read from such a file leaves them out.
TRAINING_SECTIONS = frozenset({'label_map', 'train_data', 'eval_data',
                               'optimizer', 'schedule', 'trainer'})


def check_config(config):
  """Raises ValueError unless `config` has the layout in the module doc."""
  if not isinstance(config, dict):
    raise ValueError(f'the config must be a mapping, got {type(config)}.')
  unknown = set(config) - {'task', 'model'}
  if unknown:
    raise ValueError(f'unknown config keys {sorted(unknown)}; expected task '
                     'and model.')
  if config.get('task') not in TASKS:
    raise ValueError(f'task must be one of {list(TASKS)}, got '
                     f'{config.get("task")!r}.')
  model = config.get('model')
  missing = [k for k in REQUIRED
             if not isinstance(model, dict) or k not in model]
  if missing:
    raise ValueError(f'model needs {list(missing)}.')


def _input_shape(input_size):
  size = [input_size] * 2 if isinstance(input_size, int) else list(input_size)
  if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
    raise ValueError('input_size must be an int or [height, width], got '
                     f'{input_size!r}.')
  return (*size, 3)


def build_model_from_config(config):
  """A detector of model.type (task detection) or a classifier (task
  classification)."""
  check_config(config)
  options = dict(config['model'])
  backbone = options.pop('backbone')
  input_shape = _input_shape(options.pop('input_size'))
  num_classes = options.pop('num_classes')
  if config['task'] == 'detection':
    build = detector_type(options).build
    options.pop('type', None)
    return build(backbone, num_classes, input_shape, **options)
  if 'type' in options:
    raise ValueError('model.type names a detector; task classification '
                     'takes none.')
  return build_classifier(num_classes, backbone, input_shape, **options)

