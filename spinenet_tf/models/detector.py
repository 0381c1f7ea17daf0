"""What the trainer, the JAX step and the export ask of a detector.

A detector model (RetinaNet, and any other that plugs in beside it through
`models.factory.DETECTORS`) inherits `Detector` and overrides what differs:

    image_shape       the fixed (height, width, 3) it detects on
    LOSS_NAMES        the names `training_losses` returns, 'total_loss'
                      first (the trainer logs them in this order)
    INSTANCE_LABELS   the training labels with one slot per instance,
                      [B, M, ...] (cut together after the last real one,
                      outside XLA; () keeps M static)
    training_inputs(images, labels)   what `model(..., training=True)`
                      takes: the images, or the images with the ground
                      truth a model samples from inside its call
    training_losses(outputs, labels)  dict of LOSS_NAMES (per replica)
    output_spec()     {name: (shape per image, dtype name)} of `detect`
    postprocess(outputs, detect_fn)   raw outputs -> padded detections;
                      the TensorFlow export passes its own NMS kernels
    detect(images, image_info=None)   images -> detections (original
                      pixels with the eval parser's image_info)
    TRAINING_MASK_SIZE  the side of the instance masks the training labels
                      carry ('masks' [B, M, K, K]); None: no masks
    SERVABLE          whether `export.saved_model` can serve it yet

Everything here is `keras.ops` or plain Python: a detector also runs under
the JAX backend. A detector's config is its backbone, decoder, classes and
`settings` (its option dict; `LIST_SETTINGS` are tuples there).
"""

import keras

from spinenet_tf.detection import box_coder


def fixed_image_shape(backbone, detector):
  """(height, width, 3) of `backbone`'s input; a ValueError unless fixed
  (anchors are constants)."""
  image_shape = tuple(backbone.inputs[0].shape[1:])
  if None in image_shape[:2]:
    raise ValueError(f'{detector} needs a backbone with a fixed input size '
                     f'(anchors are constants), got {image_shape}.')
  return image_shape


class Detector:
  """The detector protocol (see module doc); a mix-in of a keras.Model."""
  LOSS_NAMES = ('total_loss',)
  INSTANCE_LABELS = ('boxes', 'classes')
  LIST_SETTINGS = ('aspect_ratios',)
  TRAINING_MASK_SIZE = None
  SERVABLE = True

  def training_inputs(self, images, labels):
    """The images: the model's training call needs no ground truth."""
    del labels
    return images

  def training_losses(self, outputs, labels):
    raise NotImplementedError(f'{type(self).__name__}.training_losses')

  def output_spec(self):
    """Padded detections per image: boxes, scores, classes (-1 padding),
    num_detections."""
    slots = self.settings['max_detections']
    return {'boxes': ([slots, 4], 'float32'), 'scores': ([slots], 'float32'),
            'classes': ([slots], 'int32'), 'num_detections': ([], 'int32')}

  def detect(self, images, image_info=None):
    """Images -> padded detections (`output_spec`), boxes (ymin, xmin,
    ymax, xmax) in model-input pixels, or in pixels of the original images
    when `image_info` [B, 4, 2] from the eval parser (row 2: the resize
    scale (y, x)) is given."""
    detections = self.postprocess(self(images, training=False))
    if image_info is not None:
      detections['boxes'] = box_coder.to_original_pixels(
          detections['boxes'], image_info)
    return detections

  def predict_step(self, data):
    """`predict(x)` -> detections; with y = eval labels (image_info), in
    original image pixels."""
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    image_info = y.get('image_info') if isinstance(y, dict) else None
    return self.detect(x, image_info)

  def get_config(self):
    settings = dict(self.settings)
    for key in self.LIST_SETTINGS:
      settings[key] = list(settings[key])
    settings['kernel_regularizer'] = keras.regularizers.serialize(
        keras.regularizers.get(settings['kernel_regularizer']))
    return {'name': self.name, 'trainable': self.trainable,
            'backbone': keras.saving.serialize_keras_object(self.backbone),
            'decoder': keras.saving.serialize_keras_object(self.decoder),
            'num_classes': self.num_classes, **settings}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    for part in ('backbone', 'decoder'):
      config[part] = keras.saving.deserialize_keras_object(config.get(part))
    return cls(**config)
