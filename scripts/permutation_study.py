#!/usr/bin/env python3
"""The paper's permutation study: RetinaNet with (a) ResNet-50-FPN, `spinenet-
permutation-study` when installed
(spinenet_tf/commands/permutation_study.py; its usage and flags:
--helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.commands.permutation_study import run  # noqa: E402

if __name__ == '__main__':
  run()
