"""The feature pyramid a detector stands on: a SpineNet (its outputs are the
pyramid) or a ResNet with an FPN decoder, from a model id.

    backbone, decoder = build_pyramid('resnet50', (640, 640, 3), 3, 7, shared)
"""

from spinenet_tf.layers.common import refuse_unknown_keywords
from spinenet_tf.layers.fpn import FPN, FPN_OPTIONS
from spinenet_tf.models import resnet
from spinenet_tf.models.backbone import build_backbone

DECODERS = ('fpn',)
# The settings a detector shares with its backbone and decoder.
SHARED_KEYS = ('activation', 'use_sync_bn', 'norm_momentum', 'norm_epsilon',
               'kernel_regularizer')


def build_pyramid(backbone_model_id, input_shape, min_level, max_level,
                  shared, backbone_kwargs=None, decoder=None,
                  decoder_kwargs=None):
  """(backbone, decoder or None) giving levels min_level..max_level.

  Args:
    backbone_model_id: a `build_backbone` model id, YAML path or spec list,
      or a ResNet id ('resnet50', 'resnet101', 'resnet152').
    input_shape: fixed (height, width, 3).
    shared: the detector's `SHARED_KEYS` settings, given to both.
    backbone_kwargs: extra `build_backbone` / `build_resnet` options.
    decoder: None (a ResNet gets 'fpn', a SpineNet none) or 'fpn'.
    decoder_kwargs: extra `FPN` options (num_filters, kernel_initializer).
  """
  for key, value in (('backbone_kwargs', backbone_kwargs),
                     ('decoder_kwargs', decoder_kwargs)):
    if value is not None and not isinstance(value, dict):
      raise ValueError(f'{key} must be a mapping, got {value!r}.')
  if decoder is not None and decoder not in DECODERS:
    raise ValueError(f'decoder must be None or one of {list(DECODERS)}, got '
                     f'{decoder!r}.')
  is_resnet = (isinstance(backbone_model_id, str) and
               resnet.is_resnet_id(backbone_model_id))
  decoder = decoder or ('fpn' if is_resnet else None)
  if decoder is None and decoder_kwargs:
    raise ValueError(f'decoder_kwargs {sorted(decoder_kwargs)} need a '
                     "decoder; pass decoder='fpn'.")
  refuse_unknown_keywords('FPN (decoder_kwargs)', decoder_kwargs or {},
                          FPN_OPTIONS)
  backbone_options = {**shared, **(backbone_kwargs or {})}
  if is_resnet:
    backbone = resnet.build_resnet(backbone_model_id, input_shape,
                                   **backbone_options)
  else:
    backbone = build_backbone(backbone_model_id, input_shape, min_level,
                              max_level, **backbone_options)
  decoder_model = decoder and FPN(backbone.output_specs, min_level, max_level,
                                  **{**shared, **(decoder_kwargs or {})})
  return backbone, decoder_model
