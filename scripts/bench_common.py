"""What every benchmark script shares: the environment record and writing
the markdown and JSON reports."""
import json
import os
import platform
import time

import keras
import tensorflow as tf
import tf_keras


def environment():
  return {'tensorflow': tf.__version__, 'keras': keras.__version__,
          'tf_keras': tf_keras.__version__, 'python': platform.python_version(),
          'machine': platform.machine(), 'cpu_count': os.cpu_count(),
          'date': time.strftime('%Y-%m-%d')}


def write_report(markdown, results, output_md=None, output_json=None):
  """Prints `markdown`; writes it and {'environment', **results} if asked."""
  print(markdown)
  if output_md:
    with open(output_md, 'w') as f:
      f.write(markdown)
  if output_json:
    with open(output_json, 'w') as f:
      json.dump({'environment': environment(), **results}, f, indent=2)
