"""The paper's controller: an RNN policy over the space's choices, trained
by REINFORCE with a moving-average baseline, as an Optuna sampler.

    sampler = ControllerSampler(space.parameters(), state_file='c.npz')
    study = optuna.create_study(sampler=sampler, direction='maximize')

`RNNController` is an LSTM that emits one categorical choice per
parameter, in the space's draw order; the choice made is the next step's
input (an embedding), so later choices depend on earlier ones. An update on
reward R: loss = -(R - b) log p(choices) - entropy_weight * entropy, where
b is the moving average of the rewards before R.

Many workers: every worker's sampler builds the same policy from the study.
It starts from the same seeded weights (`policy_seed`) and learns from the
study's finished trials in trial-number order, trial n once every trial
before it has finished; so the policy is the same function of the study on
every worker and lags only by the trials still running. Its state (weights,
optimizer moments, baseline, next trial number) is saved to `state_file`
after each update, so a restarted worker resumes without replaying.
Written for the TensorFlow backend (tf.GradientTape, tf.function).
"""

import io
import os

import keras
import numpy as np
import optuna
import tensorflow as tf

from spinenet_tf import checks
from spinenet_tf.io_utils import atomic_write


class RNNController(keras.Model):
  """An LSTM policy over a sequence of categorical choices.

  Args:
    num_choices: choices of each step (each > 1).
    units: LSTM width.
    learning_rate: Adam's.
    baseline_decay: the moving average's decay per reward.
    entropy_weight: the entropy bonus (keeps exploring).
    seed: the initial weights.
    sample_seed: the draws' seed (draw n: seed (sample_seed, n)).
  """

  def __init__(self, num_choices, units=64, learning_rate=0.002,
               baseline_decay=0.9, entropy_weight=0.01, seed=0,
               sample_seed=0):
    super().__init__()
    self.num_choices = [checks.integer('num_choices', n, 2)
                        for n in num_choices]
    self.baseline_decay = checks.number('baseline_decay', baseline_decay, 0,
                                        1, high_open=True)
    self.entropy_weight = checks.number('entropy_weight', entropy_weight, 0)
    self.sample_seed = checks.integer('sample_seed', sample_seed, 0)
    steps, widest = len(self.num_choices), max(self.num_choices)
    total = sum(self.num_choices)
    # Step t's choice c is row offsets[t] + c of the embedding; the last
    # row is the start token. Each step has its own head, padded to the
    # widest step with the padding masked out.
    self.offsets = tf.constant(np.cumsum([0] + self.num_choices[:-1]),
                               tf.int32)
    self.padding = tf.constant([[0.0] * n + [-1e9] * (widest - n)
                                for n in self.num_choices])
    uniform = lambda k: keras.initializers.RandomUniform(-0.1, 0.1,
                                                         seed=seed + k)
    units = checks.integer('units', units, 1)
    self.cell = keras.layers.LSTMCell(units, kernel_initializer=uniform(1),
                                      recurrent_initializer=uniform(2))
    self.embedding = keras.layers.Embedding(
        total + 1, units, embeddings_initializer=uniform(3))
    self.head_kernel = self.add_weight(shape=(steps, units, widest),
                                       initializer=uniform(4),
                                       name='head_kernel')
    self.head_bias = self.add_weight(shape=(steps, widest),
                                     initializer='zeros', name='head_bias')
    self.baseline = None
    self.controller_optimizer = keras.optimizers.Adam(learning_rate)
    self._sample = tf.function(lambda seed: self._unroll(None, 1, seed))
    self._update = tf.function(self._gradient_step)
    self.log_prob(np.zeros([1, steps], np.int32))  # builds the weights
    self.controller_optimizer.build(self.trainable_variables)

  def _unroll(self, actions, batch, seed=None):
    """(choices [batch, steps], log p [batch], entropy [batch]); draws the
    choices (stateless, from `seed`) when `actions` is None."""
    steps = len(self.num_choices)
    state = [tf.zeros([batch, self.cell.units])] * 2
    inputs = self.embedding(tf.fill([batch], sum(self.num_choices)))
    chosen = tf.TensorArray(tf.int32, size=steps)
    log_p, entropy = tf.zeros([batch]), tf.zeros([batch])
    for step in tf.range(steps):
      output, state = self.cell(inputs, state)
      log_probs = tf.nn.log_softmax(
          tf.matmul(output, self.head_kernel[step]) + self.head_bias[step]
          + self.padding[step])
      if actions is None:
        action = tf.cast(tf.random.stateless_categorical(
            log_probs, 1, seed + tf.stack([0, step]))[:, 0], tf.int32)
      else:
        action = actions[:, step]
      chosen = chosen.write(step, action)
      log_p += tf.gather(log_probs, action, axis=1, batch_dims=1)
      entropy -= tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=1)
      inputs = self.embedding(self.offsets[step] + action)
    return tf.transpose(chosen.stack()), log_p, entropy

  def call(self, actions):
    """log p of each row of `actions` ([batch, steps] int32)."""
    return self._unroll(actions, tf.shape(actions)[0])[1]

  def log_prob(self, actions):
    """log p of each row of `actions` as numpy."""
    return self(tf.constant(actions, tf.int32)).numpy()

  def sample(self, draw):
    """Draw number `draw` (an int >= 0) of the current policy: one int per
    step."""
    seed = tf.constant([self.sample_seed, draw * len(self.num_choices)],
                       tf.int32)
    return self._sample(seed)[0][0].numpy().tolist()

  def _gradient_step(self, actions, advantages):
    with tf.GradientTape() as tape:
      _, log_p, entropy = self._unroll(actions, tf.shape(actions)[0])
      loss = -tf.reduce_mean(advantages * log_p) - (
          self.entropy_weight * tf.reduce_mean(entropy))
    variables = self.trainable_variables
    self.controller_optimizer.apply(tape.gradient(loss, variables), variables)
    return loss

  def update(self, actions, reward):
    """One REINFORCE step on a draw (`actions`, one list) and its reward."""
    reward = float(reward)
    if self.baseline is None:
      self.baseline = reward
    advantage = reward - self.baseline
    self._update(tf.constant([actions], tf.int32),
                 tf.constant([advantage], tf.float32))
    self.baseline = (self.baseline_decay * self.baseline
                     + (1 - self.baseline_decay) * reward)

  def state(self):
    """What the policy learned (weights, optimizer moments, baseline), as
    numpy arrays; the draws' seed is not part of it."""
    arrays = {f'weight_{i}': w for i, w in enumerate(self.get_weights())}
    arrays.update({f'optimizer_{i}': v.numpy() for i, v in
                   enumerate(self.controller_optimizer.variables)})
    arrays['baseline'] = np.array(np.nan if self.baseline is None
                                  else self.baseline)
    arrays['num_choices'] = np.array(self.num_choices)
    return arrays

  def load_state(self, arrays):
    if list(arrays['num_choices']) != self.num_choices:
      raise ValueError(f'controller state has choices '
                       f'{list(arrays["num_choices"])}, not this space\'s '
                       f'{self.num_choices}.')
    self.set_weights([arrays[f'weight_{i}']
                      for i in range(len(self.get_weights()))])
    for i, variable in enumerate(self.controller_optimizer.variables):
      variable.assign(arrays[f'optimizer_{i}'])
    baseline = float(arrays['baseline'])
    self.baseline = None if np.isnan(baseline) else baseline


def value_reward(trial):
  """A complete trial's first objective value; None (no update) otherwise."""
  if trial.state == optuna.trial.TrialState.COMPLETE:
    return trial.values[0]
  return None


class ControllerSampler(optuna.samplers.BaseSampler):
  """An Optuna sampler drawing every parameter from an `RNNController`.

  Args:
    parameters: [(name, number of choices)] (`SearchSpace.parameters()`).
    reward: trial -> float, or None to learn nothing from it.
    state_file: where the controller's state is saved and resumed from.
    seed: the draws: trial n is draw n of the seed's stream, so workers
      with one seed draw distinct trials alike (None: random).
    policy_seed: the initial weights; the same on every worker.
    **controller_kwargs: `RNNController`'s.
  """

  def __init__(self, parameters, reward=value_reward, state_file=None,
               seed=None, policy_seed=0, **controller_kwargs):
    self.names = [name for name, _ in parameters]
    self.distributions = {
        name: optuna.distributions.IntDistribution(0, n - 1)
        for name, n in parameters}
    self.controller = RNNController(
        [n for _, n in parameters], seed=policy_seed,
        sample_seed=np.random.SeedSequence(seed).generate_state(1)[0] >> 1,
        **controller_kwargs)
    self.reward, self.state_file, self.next_number = reward, state_file, 0
    self._fallback = optuna.samplers.RandomSampler(seed)
    if state_file and os.path.exists(state_file):
      self._load()

  def _load(self):
    with np.load(self.state_file) as arrays:
      arrays = dict(arrays)
    self.controller.load_state(arrays)
    self.next_number = int(arrays['next_number'])

  def save(self):
    buffer = io.BytesIO()
    np.savez(buffer, next_number=np.array(self.next_number),
             **self.controller.state())
    atomic_write(self.state_file, buffer.getvalue())

  def learn(self, trials):
    """Updates on the finished trials from `next_number` on, in number
    order, up to the first unfinished one; returns how many it consumed."""
    by_number = {t.number: t for t in trials}
    start = self.next_number
    while (self.next_number in by_number
           and by_number[self.next_number].state.is_finished()):
      trial = by_number[self.next_number]
      reward = self.reward(trial)
      if reward is not None and all(n in trial.params for n in self.names):
        self.controller.update([trial.params[n] for n in self.names], reward)
      self.next_number += 1
    if self.next_number > start and self.state_file:
      self.save()
    return self.next_number - start

  def infer_relative_search_space(self, study, trial):
    return dict(self.distributions)

  def sample_relative(self, study, trial, search_space):
    if not search_space:
      return {}
    self.learn(study.get_trials(deepcopy=False))
    draw = dict(zip(self.names, self.controller.sample(trial.number)))
    return {name: draw[name] for name in search_space}

  def sample_independent(self, study, trial, param_name, param_distribution):
    return self._fallback.sample_independent(study, trial, param_name,
                                             param_distribution)
