#!/usr/bin/env python3
"""Runs a detector or classifier on image files;
`spinenet-predict` when installed (spinenet_tf/commands/predict.py;
its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.commands.predict import main, run  # noqa: E402,F401 (main: drivers)

if __name__ == '__main__':
  run()
