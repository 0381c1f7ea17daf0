#!/usr/bin/env python3
"""Convert COCO-format annotations to detection TFRecords.
`spinenet-coco-to-tfrecord` when installed
(spinenet_tf/commands/coco_to_tfrecord.py; its usage and flags: --helpfull)."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from spinenet_tf.commands.coco_to_tfrecord import run  # noqa: E402

if __name__ == '__main__':
  run()
