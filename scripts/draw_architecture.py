#!/usr/bin/env python3
"""Draws a SpineNet architecture as a PNG;
`spinenet-draw` when installed (spinenet_tf/commands/draw.py;
its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.commands.draw import main, run  # noqa: E402,F401 (main: drivers)

if __name__ == '__main__':
  run()
