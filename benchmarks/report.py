"""What every benchmark script shares: the environment record and writing
the markdown and JSON reports."""
import importlib.metadata
import json
import os
import platform
import time

PACKAGES = ('tensorflow', 'keras', 'tf_keras', 'jax', 'jaxlib')
# The vector and matrix extensions that decide CPU speed (and whether XLA
# or bfloat16 pays): /proc/cpuinfo flag -> name.
CPU_EXTENSIONS = (('avx2', 'AVX2'), ('fma', 'FMA'), ('avx512f', 'AVX-512F'),
                  ('avx512_vnni', 'AVX-512 VNNI'),
                  ('avx512_bf16', 'AVX-512 BF16'), ('amx_tile', 'AMX'),
                  ('amx_bf16', 'AMX BF16'))


def _version(package):
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def cpu(cpuinfo='/proc/cpuinfo'):
  """{'model': the CPU's name, 'extensions': CPU_EXTENSIONS it has} (from
  /proc/cpuinfo on Linux; elsewhere platform.processor(), none listed)."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open(cpuinfo) as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip()
        if key == 'model name' and value.strip():
          model = value.strip()
        elif key in ('flags', 'Features'):
          flags = set(value.split())
        if key == '' and flags:  # the first processor's block is enough
          break
  except OSError:
    pass
  return {'model': model,
          'extensions': [name for flag, name in CPU_EXTENSIONS
                         if flag in flags]}


def machine_line(cpuinfo='/proc/cpuinfo'):
  """'2 cores of AMD EPYC (AVX2, FMA, AVX-512F, ...; no AMX)': printed with
  every table, because the ratios hold for that kind of CPU only."""
  info = cpu(cpuinfo)
  extensions = info['extensions'] or ['no AVX2, AVX-512 or AMX']
  if 'AMX' not in extensions and info['extensions']:
    extensions = extensions + ['no AMX']
  return (f'{os.cpu_count()} cores of {info["model"]} '
          f'({", ".join(extensions)})')


def environment():
  """Package versions (without importing them: the JAX benchmark runs where
  TensorFlow is not installed), Python, machine, CPU and its extensions,
  date."""
  return {**{p: _version(p) for p in PACKAGES},
          'keras_backend': os.environ.get('KERAS_BACKEND', 'tensorflow'),
          'python': platform.python_version(), 'machine': platform.machine(),
          'cpu_count': os.cpu_count(), 'cpu': cpu(),
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
