"""What the trainer, the JAX step and the export ask of a detector.

A detector model (RetinaNet, and any other that plugs in beside it through
`models.factory.DETECTORS`) inherits `Detector` and overrides what differs:

    image_shape       the fixed (height, width, 3) it detects on
    LOSS_NAMES        the names `training_losses` returns, 'total_loss'
                      first (the trainer logs them in this order)
    INSTANCE_LABELS   the training labels with one slot per instance,
                      [B, M, ...] (cut together after the last real one)
    training_inputs(images, labels)   what `model(..., training=True)`
                      takes: the images, or the images with the ground
                      truth a model samples from inside its call
    training_losses(outputs, labels)  dict of LOSS_NAMES (per replica)
    output_spec()     {name: (shape per image, dtype name)} of `detect`
    postprocess(outputs, detect_fn)   raw outputs -> padded detections;
                      the TensorFlow export passes its own NMS kernels

Everything here is `keras.ops` or plain Python: a detector also runs under
the JAX backend.
"""


class Detector:
  """The detector protocol (see module doc); a mix-in of a keras.Model."""
  LOSS_NAMES = ('total_loss',)
  INSTANCE_LABELS = ('boxes', 'classes')

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
