"""The paper's controller (an RNN trained by REINFORCE) as an Optuna
sampler: it learns a synthetic reward (no training), many workers rebuild
the same policy from the study, its state resumes, it waits for unfinished
trials, and the engine runs it on the real space."""
import os

import numpy as np
import optuna
import pytest

from spinenet_tf.search import controller, engine, proxy
from spinenet_tf.search.space import SearchSpace

PARAMETERS = [(f'choice_{i}', 5) for i in range(10)]
BEST = [i % 5 for i in range(10)]  # the one architecture with reward 1


def synthetic_reward(trial):
  """The share of choices equal to BEST's: 0..1."""
  return float(np.mean([trial.suggest_int(name, 0, n - 1) == best
                        for (name, n), best in zip(PARAMETERS, BEST)]))


def p_best(sampler):
  return float(np.exp(sampler.controller.log_prob([BEST])[0]))


def test_reinforce_learns_the_best_choices_of_a_synthetic_reward(tmp_path):
  sampler = controller.ControllerSampler(
      PARAMETERS, state_file=str(tmp_path / 'c.npz'), seed=0)
  study = optuna.create_study(direction='maximize', sampler=sampler)
  assert p_best(sampler) == pytest.approx(0.2 ** 10, rel=0.5)  # ~1e-7
  study.optimize(synthetic_reward, n_trials=201)
  # Trial n is learned from when trial n+1 is drawn: 200 updates. Measured
  # (seed 0): p(best) 0.79, the last 20 rewards 0.98 on average.
  assert sampler.next_number == 200
  assert p_best(sampler) >= 0.5
  assert np.mean([t.value for t in study.trials[-20:]]) >= 0.9

  # A second worker (another seed) rebuilds the same policy from the study.
  other = controller.ControllerSampler(PARAMETERS, seed=7)
  assert other.learn(study.trials) == 201
  sampler.learn(study.trials)
  np.testing.assert_allclose(other.controller.log_prob([BEST, [0] * 10]),
                             sampler.controller.log_prob([BEST, [0] * 10]),
                             rtol=1e-4)
  # A restarted worker resumes from the state file without replaying.
  resumed = controller.ControllerSampler(
      PARAMETERS, state_file=str(tmp_path / 'c.npz'), seed=1)
  assert resumed.next_number == 201 and resumed.learn(study.trials) == 0
  assert resumed.controller.baseline == sampler.controller.baseline
  np.testing.assert_array_equal(resumed.controller.log_prob([BEST]),
                                sampler.controller.log_prob([BEST]))
  # ... and draws the architecture it learned.
  assert resumed.controller.sample(201) == BEST


def test_learning_waits_for_the_first_unfinished_trial():
  sampler = controller.ControllerSampler(PARAMETERS, seed=0)
  study = optuna.create_study(direction='maximize')
  running = study.ask()
  for value in (0.5, 0.7):
    study.add_trial(optuna.trial.create_trial(
        params=dict(zip([n for n, _ in PARAMETERS], BEST)),
        distributions=sampler.distributions, value=value))
  before = sampler.controller.log_prob([BEST])
  assert sampler.learn(study.trials) == 0
  study.tell(running, state=optuna.trial.TrialState.FAIL)
  assert sampler.learn(study.trials) == 3  # the FAIL taught nothing
  assert sampler.controller.log_prob([BEST])[0] > before[0]


def test_engine_reward_of_each_trial_end():
  make = optuna.trial.create_trial
  state = optuna.trial.TrialState
  assert engine.controller_reward(make(value=0.3)) == 0.3
  assert engine.controller_reward(make(
      state=state.PRUNED, intermediate_values={100: 0.1, 200: 0.05})) == 0.05
  assert engine.controller_reward(make(
      state=state.PRUNED, user_attrs={engine.OVER_BUDGET: True})) == 0.0
  assert engine.controller_reward(make(
      state=state.FAIL, user_attrs={'fail_reason': 'NaN loss: ...'})) == 0.0
  assert engine.controller_reward(make(
      state=state.FAIL, user_attrs={'fail_reason': 'ValueError: x'})) is None


def test_search_with_the_rl_controller_on_the_real_space(tmp_path,
                                                         monkeypatch):
  monkeypatch.setattr(proxy, 'train_and_evaluate',
                      lambda config, data_dir, run_dir, on_evaluate=None: {
                          'AP': 0.2, 'AP50': 0.4, 'seconds': 1.0})
  monkeypatch.setattr(proxy.Proxy, 'measure', lambda self, config: {
      'params': 1000, 'flops': 4e8, 'latency_ms': float('nan')})
  space = SearchSpace('SpineNet-49')
  quick = proxy.Proxy(overrides=[proxy.QUICK_OVERRIDES], latency_runs=0)
  folder = str(tmp_path / 'search')
  search = engine.Search(folder, space, quick, sampler='rl', seed=3)
  search.run(3, log=lambda line: None)
  trials = search.study.get_trials()
  assert [t.state.name for t in trials] == ['COMPLETE'] * 3
  for trial in trials:  # every draw is a candidate of the space
    assert space.decode(trial.params) == space.decode(
        space.encode(space.decode(trial.params)))
  assert len({tuple(sorted(t.params.items())) for t in trials}) == 3
  assert os.path.exists(os.path.join(folder, 'controller_spinenet_search.npz'))
  assert search.study.sampler.next_number == 2
  with pytest.raises(ValueError, match="'rl' rewards AP only"):
    engine.Search(str(tmp_path / 'b'), space, quick, sampler='rl',
                  objectives='ap,flops')
  with pytest.raises(ValueError, match='startup_trials is a TPE setting'):
    engine.Search(str(tmp_path / 'c'), space, quick, sampler='rl',
                  startup_trials=5)
