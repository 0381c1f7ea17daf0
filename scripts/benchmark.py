#!/usr/bin/env python3
"""Every measurement of spinenet_tf against Model Garden, in one run
(benchmarks/benchmark.py; its usage and flags: --helpfull)."""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# benchmarks/ is a checkout package, not shipped in the wheel.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from benchmarks.benchmark import run  # noqa: E402

if __name__ == '__main__':
  run()
