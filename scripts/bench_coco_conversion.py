#!/usr/bin/env python3
"""COCO-format -> TFRecord conversion speed: ours vs Model Garden's converter
(benchmarks/coco_conversion.py; its usage and flags: --helpfull)."""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# benchmarks/ is a checkout package, not shipped in the wheel.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from benchmarks.coco_conversion import run  # noqa: E402

if __name__ == '__main__':
  run()
