#!/usr/bin/env bash
# Offline demo. Installs spinenet_tf into ./.venv (created or reused), then:
#   1. builds every SpineNet variant and prints its parameter count,
#   2. converts a Model Garden SpineNet-49S checkpoint (random weights, made
#      here) into our model and prints the largest output difference,
#   3. draws the SpineNet-49 architecture picture.
# Everything is written under outputs/quickstart/. The detector part (train on
# the built-in dataset, evaluate, export, predict) joins when detection lands.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-outputs/quickstart}"
source scripts/lib/venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$OUT"
echo "== 1/3 building all variants"
"$VENV/bin/python" - <<'PY'
import spinenet_tf
for model_id in spinenet_tf.MODEL_IDS:
  size = 384 if model_id.startswith('mobile') else 640
  model = spinenet_tf.build_backbone(model_id, (size, size, 3))
  shapes = ', '.join(f'P{k}{tuple(v[1:3])}' for k, v in model.output_specs.items())
  print(f'  SpineNet-{model_id:12s} {model.count_params():>12,d} params at {size}: {shapes}')
PY
echo "== 2/3 converting a Model Garden checkpoint"
"$VENV/bin/python" - "$OUT" <<'PY'
import sys
import numpy as np
import tensorflow as tf
import tf_keras
from official.vision.modeling.backbones import spinenet
import spinenet_tf
from spinenet_tf.export.model_garden_checkpoint import convert_checkpoint
out = sys.argv[1]
s = spinenet_tf.SCALING['49S']
reference = spinenet.SpineNet(
    input_specs=tf_keras.layers.InputSpec(shape=[None, 256, 256, 3]),
    endpoints_num_filters=s.endpoints_num_filters,
    resample_alpha=s.resample_alpha, filter_size_scale=s.filter_size_scale)
path = tf.train.Checkpoint(backbone=reference).save(f'{out}/model_garden_49s/ckpt')
ours = spinenet_tf.build_backbone('49S', (256, 256, 3))
count = convert_checkpoint(path, ours)
images = np.random.default_rng(0).uniform(0, 1, (1, 256, 256, 3)).astype('float32')
expected, got = reference(images, training=False), ours(images, training=False)
diff = max(float(np.abs(np.asarray(got[k]) - expected[k].numpy()).max()) for k in expected)
ours.save_weights(f'{out}/spinenet49s_converted.weights.h5')
print(f'  converted {count} variables from {path}; max |ours - reference| = {diff:.2e}')
PY
echo "== 3/3 drawing the architecture"
"$VENV/bin/python" scripts/draw_architecture.py --model_id 49 --output "$OUT/spinenet49.png"
echo "== done. Outputs in $OUT:"
ls -1 "$OUT"
