#!/usr/bin/env python3
"""Training throughput of RetinaNet-SpineNet-49: ours vs Model Garden's
(spinenet_tf/benchmarks/train_speed.py; its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.benchmarks.train_speed import run  # noqa: E402

if __name__ == '__main__':
  run()
