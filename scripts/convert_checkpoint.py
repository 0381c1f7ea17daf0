#!/usr/bin/env python3
"""Convert a Model Garden SpineNet / SpineNet-Mobile TF2 checkpoint.

  python scripts/convert_checkpoint.py --checkpoint ckpt-dir --model_id 49 \
      --output spinenet49.weights.h5
"""
import sys

from spinenet_tf.export.model_garden_checkpoint import main

if __name__ == '__main__':
  sys.exit(main())
