#!/usr/bin/env python3
"""Training throughput of RetinaNet-SpineNet-49: ours vs Model Garden's
(benchmarks/train_speed.py; its usage and flags: --helpfull)."""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# benchmarks/ is a checkout package, not shipped in the wheel.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from benchmarks.train_speed import run  # noqa: E402

if __name__ == '__main__':
  run()
