#!/usr/bin/env python3
"""Parity report: parameter counts and conversion error vs Model Garden
(spinenet_tf/benchmarks/parity.py; its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.benchmarks.parity import run  # noqa: E402

if __name__ == '__main__':
  run()
