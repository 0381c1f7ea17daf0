"""Draw a SpineNet architecture as a PNG.

  spinenet-draw --model_id 49 --output spinenet49.png
  spinenet-draw --spec_file my_specs.yaml --output my.png
"""
from absl import flags

from spinenet_tf import cli
from spinenet_tf.viz import draw_architecture

FLAGS = flags.FLAGS
flags.DEFINE_string('model_id', '49', 'Model id: 49S, 49, 96, 143, 143L, 190, '
                    'mobile-49, mobile-49S, mobile-49XS, R0-SP53.')
flags.DEFINE_string('spec_file', None, 'YAML block-spec file; overrides '
                    '--model_id.')
flags.DEFINE_string('output', 'spinenet.png', 'Where to write the PNG.')
flags.DEFINE_integer('min_level', 3, 'Lowest output level.')
flags.DEFINE_integer('max_level', 7, 'Highest output level.')
flags.DEFINE_string('title', None, 'Figure title (default: the model id).')


def main(argv):
  del argv
  path = draw_architecture(FLAGS.spec_file or FLAGS.model_id, FLAGS.output,
                           FLAGS.min_level, FLAGS.max_level, title=FLAGS.title)
  print(f'wrote {path}')


def run():
  """The console entry point (spinenet-draw)."""
  cli.run(main, doc=__doc__)


if __name__ == '__main__':
  run()
