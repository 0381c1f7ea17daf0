"""The search's Optuna samplers and pruners, by name.

    sampler = build_sampler('random', seed=7)   # trial n: seed (7, n)

With a seed, trial n is drawn by a sampler seeded by (seed, n)
(`TrialSeeded`): workers started together with one command draw distinct
candidates, and a study's random draws are the same whatever the number
of workers. TPE and NSGA-II also read the finished trials when they draw,
so with several workers their draws after the random start-up depend on
which trials had finished (timing), not on the seed alone.
"""

import numpy as np
import optuna

from spinenet_tf import checks

SAMPLERS = ('tpe', 'random', 'nsga2', 'rl')
PRUNERS = ('none', 'median', 'successive_halving', 'hyperband')


def trial_seed(seed, number):
  """The seed of trial `number` in a study seeded by `seed` (an int)."""
  return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeeded(optuna.samplers.BaseSampler):
  """Draws each trial with its own sampler, `make(trial_seed(seed, n))`
  for trial n (built when the trial starts; samplers that keep no state
  but their random stream, as Optuna's random, TPE and NSGA-II)."""

  def __init__(self, make, seed):
    self.make, self.seed = make, seed
    self.current = (None, None)  # (trial number, its sampler)

  def _sampler(self, trial):
    number, sampler = self.current
    if number != trial.number:
      sampler = self.make(trial_seed(self.seed, trial.number))
      self.current = (trial.number, sampler)
    return sampler

  def infer_relative_search_space(self, study, trial):
    return self._sampler(trial).infer_relative_search_space(study, trial)

  def sample_relative(self, study, trial, search_space):
    return self._sampler(trial).sample_relative(study, trial, search_space)

  def sample_independent(self, study, trial, param_name, param_distribution):
    return self._sampler(trial).sample_independent(
        study, trial, param_name, param_distribution)

  def before_trial(self, study, trial):
    self._sampler(trial).before_trial(study, trial)

  def after_trial(self, study, trial, state, values):
    self._sampler(trial).after_trial(study, trial, state, values)


def _one_sampler(name, seed, startup_trials):
  if name == 'random':
    return optuna.samplers.RandomSampler(seed=seed)
  if name == 'tpe':
    return optuna.samplers.TPESampler(seed=seed,
                                      n_startup_trials=startup_trials)
  return optuna.samplers.NSGAIISampler(seed=seed)


def build_sampler(name, seed=None, startup_trials=None):
  """'random', 'tpe' or 'nsga2' ('rl' is built by `engine.Search`, which
  knows the space); `startup_trials` is TPE's (default 10). With `seed`,
  trial n is drawn from seed (seed, n); None: random draws."""
  checks.choice('sampler', name, SAMPLERS[:3])
  if startup_trials is not None and name != 'tpe':
    raise ValueError(f'startup_trials is a TPE setting; sampler is {name!r}.')
  startup = 10 if startup_trials is None else checks.integer(
      'startup_trials', startup_trials, 0)
  if seed is None:
    return _one_sampler(name, None, startup)
  return TrialSeeded(lambda s: _one_sampler(name, s, startup),
                     checks.integer('seed', seed))


def build_pruner(name):
  checks.choice('pruner', name, PRUNERS)
  return {'none': optuna.pruners.NopPruner,
          'median': optuna.pruners.MedianPruner,
          'successive_halving': optuna.pruners.SuccessiveHalvingPruner,
          'hyperband': optuna.pruners.HyperbandPruner}[name]()
