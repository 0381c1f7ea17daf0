"""Searches a scale-permuted backbone (SpineNet's search space) on Optuna.

One machine (the study is a SQLite file in --output_dir):
  spinenet-search --output_dir=/tmp/search --n_trials=30
Many machines (the same command on each; a shared storage):
  spinenet-search --output_dir=/shared/search \\
    --storage=postgresql://user:pass@host/db --study_name=coco_search

Rerun the same command after a kill: the study goes on (a dead worker's
trial is failed after the heartbeat grace period and retried once).
The folder then holds trials.csv, top/rank<r>.yaml (+ .png) and pareto.png.
A user error is one line `error: ...`.
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import flags  # noqa: E402

from spinenet_tf import cli  # noqa: E402

flags.DEFINE_string('output_dir', None, 'The search folder: trials, reports '
                    'and (without --storage) the study database.')
flags.DEFINE_integer('n_trials', 30, 'Trials of the whole study (all '
                     'workers together).', lower_bound=1)
flags.DEFINE_string('storage', None, 'An Optuna storage URL shared by the '
                    'workers (postgresql://, mysql://, sqlite:///, or '
                    'journal:<file>); default <output_dir>/study.db.')
flags.DEFINE_string('study_name', 'spinenet_search', 'The study in the '
                    'storage (created by the first worker).')
flags.DEFINE_string('allocation', 'SpineNet-49', 'The block allocation: '
                    'SpineNet-49, R0-SP53, R14-SP39, R23-SP30 or R35-SP18.')
flags.DEFINE_integer('window', 5, 'Intermediate blocks pick parents among '
                     'the last WINDOW blocks.', lower_bound=2)
flags.DEFINE_integer('output_window', None, 'Output blocks pick among the '
                     'last OUTPUT_WINDOW blocks (default: all).',
                     lower_bound=2)
flags.DEFINE_bool('adjust_levels', True, 'Search a level offset in {-1, 0, '
                  '1, 2} per intermediate block.')
flags.DEFINE_bool('adjust_block_types', True, 'Search bottleneck or '
                  'residual per block.')
flags.DEFINE_enum('sampler', 'tpe', ['tpe', 'random', 'nsga2', 'rl'],
                  "The Optuna sampler; 'rl': the paper's RNN controller "
                  '(REINFORCE), its state in <output_dir>/controller_'
                  '<study_name>.npz.')
flags.DEFINE_enum('objectives', 'ap', ['ap', 'ap,flops', 'ap,latency'],
                  'What the study optimizes (AP up; FLOPs or latency down).')
flags.DEFINE_enum('pruner', 'none', ['none', 'median', 'successive_halving',
                                     'hyperband'],
                  'Prunes trials on the AP reported during training.')
flags.DEFINE_integer('reports_per_trial', 3, 'Evaluations per trial when '
                     'pruning.', lower_bound=1)
flags.DEFINE_float('max_gflops', None, 'Candidates above are not trained '
                   '(a worker stops after 50 such draws in a row).')
flags.DEFINE_float('max_latency_ms', None, 'Candidates slower (batch 1, '
                   'this machine) are not trained (a worker stops after 50 '
                   'such draws in a row).')
flags.DEFINE_integer('latency_runs', 5, 'Timed forward passes per candidate '
                     '(0: no latency).', lower_bound=0)
flags.DEFINE_integer('seed', None, "The study's seed (the same on every "
                     'worker): trial n is drawn from (seed, n); recorded by '
                     "the study's first worker.", lower_bound=0)
flags.DEFINE_integer('startup_trials', None, 'Random trials before TPE '
                     'models the results (TPE only; default 10).',
                     lower_bound=0)
flags.DEFINE_integer('heartbeat_seconds', 60, 'Heartbeat of running trials '
                     '(database storages); a trial silent for twice this '
                     'is failed and retried.', lower_bound=1)
flags.DEFINE_string('proxy_config', None, 'The proxy experiment (default '
                    'spinenet_tf/configs/search_proxy.yaml; the paper\'s: '
                    'spinenet_tf/configs/search_proxy_paper_coco.yaml).')
flags.DEFINE_multi_string('params_override', [], 'Overrides of the proxy '
                          "experiment, as train.py's.")
flags.DEFINE_string('data_dir', None, 'Data of the proxy (default '
                    '<output_dir>/data_<size>, the synthetic scenes written '
                    'on first use).')
flags.DEFINE_list('references', [], 'Reference architectures to train under '
                  'the same proxy for the Pareto plot: SpineNet-49, R50-FPN '
                  '(one worker trains each; the others go on).')
flags.DEFINE_integer('top_k', 5, 'Best candidates written to top/.',
                     lower_bound=1)
flags.DEFINE_bool('report_only', False, 'Write the reports of an existing '
                  'study and exit (trains nothing).')
flags.DEFINE_bool('quick', False, 'Tiny trials (128 px, 2 steps) to check a '
                  'search end to end.')
FLAGS = flags.FLAGS


def main(argv):
  import optuna

  from spinenet_tf.search import engine, proxy, report
  from spinenet_tf.search.space import SearchSpace

  optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress line

  cli.refuse_arguments(argv)
  if not FLAGS.output_dir:
    raise cli.UserError('--output_dir is required.')
  space = SearchSpace(FLAGS.allocation, FLAGS.window, FLAGS.output_window,
                      FLAGS.adjust_levels, FLAGS.adjust_block_types)
  overrides = ([proxy.QUICK_OVERRIDES] if FLAGS.quick else []) + list(
      FLAGS.params_override)
  proxy_task = proxy.Proxy(FLAGS.proxy_config or proxy.CPU_PROXY, overrides,
                           FLAGS.data_dir, FLAGS.latency_runs)
  proxy_task.data_dir = proxy_task.data_dir or os.path.join(
      FLAGS.output_dir, f'data_{proxy_task.input_size}')
  if FLAGS.report_only:  # an existing study, nothing trained
    engine.load_study(engine.open_storage(FLAGS.storage, FLAGS.output_dir,
                                          FLAGS.heartbeat_seconds),
                      FLAGS.study_name)
  search = engine.Search(
      FLAGS.output_dir, space, proxy_task, FLAGS.sampler, FLAGS.objectives,
      FLAGS.storage, FLAGS.study_name, FLAGS.pruner, FLAGS.reports_per_trial,
      FLAGS.max_gflops, FLAGS.max_latency_ms, FLAGS.seed,
      FLAGS.startup_trials, FLAGS.heartbeat_seconds)
  log = lambda line: print(line, flush=True)
  for name in FLAGS.references:
    search.reference(name, train=not FLAGS.report_only, log=log)
  if not FLAGS.report_only:
    log(f'search space ({FLAGS.allocation}):\n{space.describe()}')
    trials_csv = os.path.join(FLAGS.output_dir, 'trials.csv')
    search.run(FLAGS.n_trials, log=log,
               on_trial=lambda study, _: report.write_trials_csv(
                   study.get_trials(deepcopy=False), trials_csv))
  references = {name: search.reference(name, train=False)
                for name in FLAGS.references}
  for name in sorted(n for n, r in references.items() if r is None):
    log(f'reference {name}: no result yet (another worker trains it, or '
        'run without --report_only); not in pareto.png.')
  print(report.write_report(
      search.study, FLAGS.output_dir, FLAGS.top_k,
      [(r['name'], r['gflops'], r['AP']) for r in references.values()
       if r is not None]))
  print(f'wrote {FLAGS.output_dir}/trials.csv, top/, pareto.png')


def run():
  """The console entry point (spinenet-search)."""
  cli.run(main, doc=__doc__)


if __name__ == '__main__':
  run()
