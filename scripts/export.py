#!/usr/bin/env python3
"""Exports a detector or classifier as a SavedModel;
`spinenet-export` when installed (spinenet_tf/commands/export.py;
its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.commands.export import main, run  # noqa: E402,F401 (main: drivers)

if __name__ == '__main__':
  run()
