#!/usr/bin/env python3
"""Every measurement of spinenet_tf against Model Garden, in one run
(spinenet_tf/benchmarks/benchmark.py; its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.benchmarks.benchmark import run  # noqa: E402

if __name__ == '__main__':
  run()
