"""SpineNet as a KerasHub backbone (the `spinenet_tf[keras-hub]` extra).

`SpineNetBackbone('49', image_shape=(640, 640, 3))` is a
`keras_hub.models.FeaturePyramidBackbone` whose `pyramid_outputs` are
{'P3': ..., 'P7': ...}. `keras_hub.models.RetinaNetObjectDetector` takes it
as its `backbone` directly: SpineNet's outputs are already a feature
pyramid, so no FPN is added. `spinenet_anchors(backbone)` gives the
detector SpineNet's anchors (size 3; KerasHub's default is 4).

`save_to_preset(folder)` and `SpineNetBackbone.from_preset(folder)` round-
trip config and weights. `keras_hub.models.Backbone.from_preset(folder)`
works too once this module is imported (importing registers the class).
Weights converted from Model Garden become a preset through
`SpineNetBackbone.from_spinenet(converted_backbone).save_to_preset(...)`.
"""

import keras
import keras_hub

from spinenet_tf import compat
from spinenet_tf.layers.common import PACKAGE, from_kernel_settings_config
from spinenet_tf.models.backbone import SpineNet, build_backbone

ANCHOR_SIZE = 3.0
NUM_SCALES = 3
ASPECT_RATIOS = (0.5, 1.0, 2.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpineNetBackbone(keras_hub.models.FeaturePyramidBackbone):
  """A SpineNet whose outputs are KerasHub's pyramid {'P3': ..., 'P7': ...}.

  Args:
    model_id: what `build_backbone` takes as `model_id_or_specs`: a model id
      ('49', 'mobile-49', ...), a block-spec YAML file or a list of specs.
    image_shape: (height, width, 3); None for any size.
    min_level, max_level: the pyramid levels.
    dtype: the dtype policy of every layer (default: Keras's global one).
    **backbone_kwargs: the other `build_backbone` options (activation,
      scaling, filter_size_scale, ...); unknown ones are a TypeError.
  """

  def __init__(self, model_id='49', image_shape=(None, None, 3), min_level=3,
               max_level=7, dtype=None, name='spinenet_backbone',
               trainable=True, **backbone_kwargs):
    with compat.dtype_policy_scope(dtype):
      spinenet = build_backbone(model_id, image_shape, min_level, max_level,
                                **backbone_kwargs)
    images = keras.Input(shape=spinenet.image_shape, name='images')
    features = spinenet(images)
    pyramid = {f'P{level}': features[str(level)]
               for level in range(min_level, max_level + 1)}
    super().__init__(inputs=images, outputs=pyramid, dtype=dtype, name=name,
                     trainable=trainable)
    self.spinenet = spinenet
    self.image_shape = spinenet.image_shape
    self.min_level = min_level
    self.max_level = max_level
    self.pyramid_outputs = pyramid

  @classmethod
  def from_spinenet(cls, spinenet):
    """The backbone of a built `SpineNet`, its weights copied (e.g. one
    that `convert_checkpoint` loaded from Model Garden)."""
    if not isinstance(spinenet, SpineNet):
      raise TypeError('from_spinenet takes a SpineNet (build_backbone), got '
                      f'{type(spinenet).__name__}.')
    config = cls._spinenet_arguments(spinenet)
    backbone = from_kernel_settings_config(
        cls, {**config, 'dtype': spinenet.dtype_policy})
    backbone.spinenet.set_weights(spinenet.get_weights())
    return backbone

  @staticmethod
  def _spinenet_arguments(spinenet):
    """This class's arguments that rebuild `spinenet` (kernel settings
    serialized)."""
    config = spinenet.get_config()
    del config['name'], config['trainable']
    return {'model_id': config.pop('block_specs'),
            'image_shape': config.pop('input_shape'), **config}

  def get_config(self):
    return {**super().get_config(), **self._spinenet_arguments(self.spinenet)}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    if isinstance(config.get('dtype'), dict):
      config['dtype'] = keras.dtype_policies.get(config['dtype'])
    return from_kernel_settings_config(cls, config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpineNetObjectDetector(keras_hub.models.RetinaNetObjectDetector):
  """KerasHub's RetinaNet detector on a `SpineNetBackbone`, SpineNet's
  anchors by default. `RetinaNetObjectDetector.from_preset` returns one for
  a preset whose backbone is a `SpineNetBackbone` (KerasHub picks the task
  subclass by its `backbone_cls`)."""

  backbone_cls = SpineNetBackbone

  def __init__(self, backbone, num_classes, bounding_box_format='yxyx',
               anchor_generator=None, **kwargs):
    super().__init__(backbone, num_classes, bounding_box_format,
                     anchor_generator or spinenet_anchors(
                         backbone, bounding_box_format), **kwargs)


def spinenet_anchors(backbone, bounding_box_format='yxyx'):
  """KerasHub's `AnchorGenerator` with SpineNet's RetinaNet anchors (3
  scales x aspect ratios 0.5, 1, 2 of size 3) on the backbone's levels."""
  return keras_hub.layers.AnchorGenerator(
      bounding_box_format, min_level=backbone.min_level,
      max_level=backbone.max_level, num_scales=NUM_SCALES,
      aspect_ratios=list(ASPECT_RATIOS), anchor_size=ANCHOR_SIZE)
