"""Measurements of spinenet_tf against Model Garden, importable as modules
and runnable as commands (scripts/bench_*.py, scripts/benchmark.py and
scripts/parity_report.py call each module's `run`):

  benchmark       every section below in one run, led by a summary table
  export_speed    exported RetinaNet inference latency and error
  input_pipeline  detection input pipeline images/s
  train_speed     training step images/s (our Trainer's loop)
  jax_speed       forward and training under the Keras JAX backend
  parity          parameter counts and checkpoint-conversion error
  model_garden    Model Garden's models, the oracle of tests and benchmarks
  report          the environment record and the markdown / JSON reports

Each command's flags are defined by its `run` (not on import), so that one
module can use another's measurements.
"""
