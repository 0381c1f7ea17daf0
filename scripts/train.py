"""Train or evaluate an experiment: see spinenet_tf/training/main.py.

    python scripts/train.py --experiment=demo_retinanet_synthetic \
      --model_dir=/tmp/demo --data_dir=/tmp/shapes
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from spinenet_tf.training.main import run  # noqa: E402

if __name__ == '__main__':
  run()
