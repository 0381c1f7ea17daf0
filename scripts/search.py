#!/usr/bin/env python3
"""Searches a scale-permuted backbone on Optuna;
`spinenet-search` when installed (spinenet_tf/commands/search.py;
its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.commands.search import main, run  # noqa: E402,F401 (main: drivers)

if __name__ == '__main__':
  run()
