#!/usr/bin/env python3
"""SpineNet and RetinaNet-SpineNet under the Keras JAX backend
(benchmarks/jax_speed.py; its usage and flags: --helpfull).
Runs from a checkout without installing the package: where only JAX and
Keras exist, TensorFlow (a dependency of the install) cannot be had."""
import os
import sys

os.environ.setdefault('KERAS_BACKEND', 'jax')  # before Keras is imported
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from benchmarks.jax_speed import run  # noqa: E402

if __name__ == '__main__':
  run()
