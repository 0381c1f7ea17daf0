"""Learning rate schedules, the optimizer and the L2 penalty from a config."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package='spinenet_tf')
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
  """Linear ramp from `warmup_learning_rate` to `after(warmup_steps)` over
  `warmup_steps`, then `after`."""

  def __init__(self, after, warmup_steps, warmup_learning_rate):
    self.after = after
    self.warmup_steps = warmup_steps
    self.warmup_learning_rate = warmup_learning_rate

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    target = tf.cast(self.after(self.warmup_steps), tf.float32)
    fraction = step / max(self.warmup_steps, 1)
    ramp = self.warmup_learning_rate + fraction * (
        target - self.warmup_learning_rate)
    return tf.where(step < self.warmup_steps, ramp,
                    tf.cast(self.after(step), tf.float32))

  def get_config(self):
    return {'after': keras.saving.serialize_keras_object(self.after),
            'warmup_steps': self.warmup_steps,
            'warmup_learning_rate': self.warmup_learning_rate}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config['after'] = keras.saving.deserialize_keras_object(config['after'])
    return cls(**config)


def build_schedule(config, train_steps):
  """A `ScheduleConfig` -> a learning rate (float or schedule)."""
  lr, warmup = config.learning_rate, config.warmup_steps
  if config.type == 'cosine':
    decay_steps = config.decay_steps or max(train_steps - warmup, 1)
    return keras.optimizers.schedules.CosineDecay(
        config.warmup_learning_rate if warmup else lr, decay_steps,
        alpha=config.alpha, warmup_target=lr if warmup else None,
        warmup_steps=warmup)
  if config.type == 'step':
    if len(config.boundaries) != len(config.multipliers):
      raise ValueError('schedule.boundaries and schedule.multipliers need the '
                       'same length.')
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        list(config.boundaries), [lr] + [lr * m for m in config.multipliers])
  elif not warmup:
    return lr
  else:
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [warmup], [lr, lr])
  if not warmup:
    return schedule
  return LinearWarmup(schedule, warmup, config.warmup_learning_rate)


@keras.saving.register_keras_serializable(package='spinenet_tf')
class FusedSGD(keras.optimizers.SGD):
  """Keras SGD whose momentum update, on the TensorFlow backend, is TF's
  fused kernel (ResourceApplyKerasMomentum: m = momentum * m - lr * g;
  w += m, or with nesterov w += momentum * m - lr * g): one op per
  variable where Keras runs about eight (casts, reads, multiplies, assigns),
  the same arithmetic. Same variables and checkpoints as Keras SGD; other
  backends, momentum 0 and sparse gradients take Keras's own update."""

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    # A constant learning rate is a variable, which Keras would read once
    # per model variable (490 reads a step for RetinaNet): read it once.
    if keras.backend.backend() == 'tensorflow':
      learning_rate = tf.convert_to_tensor(learning_rate)
    return super()._backend_update_step(grads, trainable_variables,
                                        learning_rate)

  def update_step(self, gradient, variable, learning_rate):
    if (keras.backend.backend() != 'tensorflow' or self.momentum == 0 or
        isinstance(gradient, tf.IndexedSlices)):
      return super().update_step(gradient, variable, learning_rate)
    momentum = self.momentums[self._get_variable_index(variable)]
    # Inside a strategy's update() the handles are this device's copies.
    return tf.raw_ops.ResourceApplyKerasMomentum(
        var=variable.handle, accum=momentum.value.handle,
        lr=tf.cast(learning_rate, variable.dtype),
        grad=tf.cast(gradient, variable.dtype),
        momentum=tf.cast(self.momentum, variable.dtype),
        use_nesterov=self.nesterov)


# optimizer.weight_decay null with type adamw: Keras's AdamW default.
ADAMW_DEFAULT_WEIGHT_DECAY = 0.004


def build_optimizer(config, schedule, mixed_precision='float32'):
  """An `OptimizerConfig` -> a Keras optimizer (loss-scaled for float16).
  Clipping is left to the loop (it clips the all-reduced gradients)."""
  weight_decay = config.weight_decay
  if weight_decay is None and config.type == 'adamw':
    weight_decay = ADAMW_DEFAULT_WEIGHT_DECAY
  common = dict(use_ema=config.use_ema, ema_momentum=config.ema_momentum)
  if config.type == 'sgd':
    optimizer = FusedSGD(
        schedule, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=weight_decay or None, **common)
  elif config.type == 'adam':
    optimizer = keras.optimizers.Adam(
        schedule, weight_decay=weight_decay or None, **common)
  else:  # AdamW takes a float; 0.0 applies no decay.
    optimizer = keras.optimizers.AdamW(
        schedule, weight_decay=float(weight_decay), **common)
  if weight_decay:
    optimizer.exclude_from_weight_decay(var_names=['gamma', 'beta', 'bias'])
  if mixed_precision == 'float16':
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def l2_penalty(variables, weight):
  """weight * sum(w**2) / 2 over kernels: BN parameters and biases are
  skipped."""
  kernels = [v for v in variables if v.path.endswith('kernel')]
  if not weight or not kernels:
    return tf.constant(0.0)
  return weight * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32))
                            for v in kernels])
