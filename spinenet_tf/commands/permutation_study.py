"""The paper's permutation study: RetinaNet with (a) ResNet-50-FPN,
(c) R0-SP53 and (d) SpineNet-49 at the search's proxy scale on the
synthetic scenes, several seeds each; one table and one picture.

  spinenet-permutation-study --output_dir=/tmp/study
  spinenet-permutation-study --output_dir=/tmp/quick --quick

Rerun the same command after a kill: finished runs are kept, an unfinished
one resumes from its checkpoint. A user error is one line `error: ...`.
"""
from absl import flags

from spinenet_tf import cli

flags.DEFINE_string('output_dir', None, 'Runs, data and reports.')
flags.DEFINE_string('architectures', 'acd', 'Letters of the architectures: '
                    '(a) R50-FPN, (c) R0-SP53, (d) SpineNet-49.')
flags.DEFINE_integer('seeds', None, 'Runs per architecture (default 3; 2 '
                     'with --quick).', lower_bound=1)
flags.DEFINE_string('config_file', None, 'The proxy experiment (default '
                    'spinenet_tf/configs/permutation_study_proxy.yaml).')
flags.DEFINE_multi_string('params_override', [], 'Overrides for every run, '
                          "as train.py's.")
flags.DEFINE_string('data_dir', None, 'The synthetic scenes (default '
                    '<output_dir>/data_<size>, written on first use).')
flags.DEFINE_bool('quick', False, 'Tiny runs (128 px, 2 steps) to check the '
                  'study end to end.')
FLAGS = flags.FLAGS


def main(argv):
  from spinenet_tf.search import permutation_study as study_lib

  cli.refuse_arguments(argv)
  if not FLAGS.output_dir:
    raise cli.UserError('--output_dir is required.')
  overrides = ([study_lib.QUICK_OVERRIDES] if FLAGS.quick else []) + list(
      FLAGS.params_override)
  study = study_lib.Study(
      FLAGS.output_dir, FLAGS.architectures,
      FLAGS.seeds or (2 if FLAGS.quick else 3),
      FLAGS.config_file or study_lib.PROXY_CONFIG, overrides, FLAGS.data_dir)
  results = study.run()
  print(study_lib.write_report(study, results))
  print(f'wrote {FLAGS.output_dir}/summary.md, summary.csv, results.csv, '
        'ap_vs_flops.png')


def run():
  cli.run(main, doc=__doc__)
