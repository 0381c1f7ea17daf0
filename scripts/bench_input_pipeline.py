#!/usr/bin/env python3
"""Host input pipeline speed: ours vs Model Garden's RetinaNet parser
(spinenet_tf/benchmarks/input_pipeline.py; its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.benchmarks.input_pipeline import run  # noqa: E402

if __name__ == '__main__':
  run()
