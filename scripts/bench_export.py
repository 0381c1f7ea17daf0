#!/usr/bin/env python3
"""Exported RetinaNet-SpineNet-49 vs Model Garden's: CPU latency and error
(spinenet_tf/benchmarks/export_speed.py; its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.benchmarks.export_speed import run  # noqa: E402

if __name__ == '__main__':
  run()
