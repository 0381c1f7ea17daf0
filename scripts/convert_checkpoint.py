#!/usr/bin/env python3
"""Convert a Model Garden SpineNet / SpineNet-Mobile TF2 checkpoint.

  python scripts/convert_checkpoint.py --checkpoint ckpt-dir --model_id 49 \
      --output spinenet49.weights.h5

Flags: --checkpoint --model_id --output [--input_size --min_level
--max_level --activation --prefix]; --verbose shows the trace of an error.
A user error is one line `error: ...` on stderr and exit status 1 (2 for a
flag error).
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.export.model_garden_checkpoint import run_cli  # noqa: E402

if __name__ == '__main__':
  run_cli()
