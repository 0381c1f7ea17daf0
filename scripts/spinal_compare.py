#!/usr/bin/env python3
"""Trains the plain VGG and SpinalVGG with the same seed and budget, side by
side. `spinenet-spinal-compare` when installed
(spinenet_tf/commands/spinal_compare.py; its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.commands.spinal_compare import run  # noqa: E402

if __name__ == '__main__':
  run()
