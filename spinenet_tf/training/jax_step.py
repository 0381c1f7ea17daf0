"""Forward and training steps under the Keras JAX backend (KERAS_BACKEND=jax).

The models, their losses and target assignment are `keras.ops` code, so
with JAX they train without TensorFlow: the steps below are pure functions
of the model's state, compiled with `jax.jit`.

    model = spinenet_tf.build_retinanet('49', 91, (640, 640, 3))
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    step = train_step(model, optimizer, detection_loss, l2_weight_decay=4e-5)
    state = initial_state(model, optimizer)
    state, losses = step(state, images, {'boxes': ..., 'classes': ...})
    write_state(model, optimizer, state)   # back into the Keras variables

`jax` is imported when a step is made, so this module imports anywhere.
"""

from keras import ops


def detection_loss(model, outputs, labels):
  """A detector's losses of `outputs` for its labels ({'boxes', 'classes'}
  for a RetinaNet): `Detector.training_losses`."""
  return model.training_losses(outputs, labels)


def initial_state(model, optimizer):
  """(trainable, non_trainable, optimizer) values of the Keras variables."""
  optimizer.build(model.trainable_variables)
  return ([v.value for v in model.trainable_variables],
          [v.value for v in model.non_trainable_variables],
          [v.value for v in optimizer.variables])


def write_state(model, optimizer, state):
  """Assigns a step's state back to the model's and optimizer's variables."""
  for variables, values in zip((model.trainable_variables,
                                model.non_trainable_variables,
                                optimizer.variables), state):
    for variable, value in zip(variables, values):
      variable.assign(value)


def forward(model):
  """jit(fn(state, images)) -> the model's outputs in inference mode."""
  import jax  # pylint: disable=import-outside-toplevel

  @jax.jit
  def fn(state, images):
    trainable, non_trainable, _ = state
    outputs, _ = model.stateless_call(trainable, non_trainable, images,
                                      training=False)
    return outputs
  return fn


def train_step(model, optimizer, loss_fn, l2_weight_decay=0.0):
  """jit(fn(state, images, labels)) -> (new state, losses).

  loss_fn(model, outputs, labels) -> dict with 'total_loss' (the tasks'
  signature; `detection_loss` for a detector). A detector's training call
  takes `model.training_inputs(images, labels)`.

  losses: what `loss_fn(model, float32 outputs, labels)` returns, plus
  l2_loss (l2_weight_decay * sum(w**2) / 2 over kernels, BN parameters and
  biases skipped, as the TensorFlow loop does) and loss, the minimised sum.
  BatchNorm moving statistics and RNG seeds come back in the new state.
  """
  import jax  # pylint: disable=import-outside-toplevel
  is_kernel = [v.path.endswith('kernel') for v in model.trainable_variables]

  def total_loss(trainable, non_trainable, images, labels):
    inputs = (model.training_inputs(images, labels)
              if hasattr(model, 'training_inputs') else images)
    outputs, non_trainable = model.stateless_call(
        trainable, non_trainable, inputs, training=True)
    outputs = jax.tree.map(lambda t: ops.cast(t, 'float32'), outputs)
    losses = dict(loss_fn(model, outputs, labels))
    kernels = [ops.sum(ops.square(ops.cast(w, 'float32')))
               for w, kernel in zip(trainable, is_kernel) if kernel]
    losses['l2_loss'] = l2_weight_decay / 2 * sum(kernels)
    losses['loss'] = losses['total_loss'] + losses['l2_loss']
    return losses['loss'], (losses, non_trainable)

  gradient = jax.value_and_grad(total_loss, has_aux=True)

  @jax.jit
  def fn(state, images, labels):
    trainable, non_trainable, optimizer_values = state
    (_, (losses, non_trainable)), grads = gradient(
        trainable, non_trainable, images, labels)
    trainable, optimizer_values = optimizer.stateless_apply(
        optimizer_values, grads, trainable)
    return (trainable, non_trainable, optimizer_values), losses
  return fn
