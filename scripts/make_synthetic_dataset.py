#!/usr/bin/env python3
"""Write a built-in synthetic detection dataset as TFRecords. `spinenet-make-
dataset` when installed (spinenet_tf/commands/make_dataset.py; its usage and
flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.commands.make_dataset import run  # noqa: E402

if __name__ == '__main__':
  run()
