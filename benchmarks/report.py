"""What every benchmark script shares: the environment record and writing
the markdown and JSON reports."""
import importlib.metadata
import json
import os
import platform
import time

PACKAGES = ('tensorflow', 'keras', 'tf_keras', 'jax', 'jaxlib')


def _version(package):
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def environment():
  """Package versions (without importing them: the JAX benchmark runs where
  TensorFlow is not installed), Python, machine, date."""
  return {**{p: _version(p) for p in PACKAGES},
          'keras_backend': os.environ.get('KERAS_BACKEND', 'tensorflow'),
          'python': platform.python_version(), 'machine': platform.machine(),
          'cpu_count': os.cpu_count(), 'date': time.strftime('%Y-%m-%d')}


def write_report(markdown, results, output_md=None, output_json=None):
  """Prints `markdown`; writes it and {'environment', **results} if asked."""
  print(markdown)
  if output_md:
    with open(output_md, 'w') as f:
      f.write(markdown)
  if output_json:
    with open(output_json, 'w') as f:
      json.dump({'environment': environment(), **results}, f, indent=2)
