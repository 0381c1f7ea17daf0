#!/usr/bin/env bash
# Offline demo on the built-in synthetic shapes dataset. Installs spinenet_tf
# into ./.venv (created or reused), then with the project's real commands:
#   1. writes the dataset and a few sample pictures,
#   2. trains RetinaNet-SpineNet-Mobile-49XS (scripts/train.py, absl flags,
#      spinenet_tf/configs/demo_retinanet_synthetic.yaml),
#   3. evaluates it with COCO metrics (scripts/train.py --mode=eval),
#   4. exports a SavedModel (scripts/export.py),
#   5. runs the export on the sample pictures (scripts/predict.py),
#   6. draws the SpineNet-49 architecture picture,
# and prints a summary. Everything goes under outputs/quickstart/ (or $OUT).
# About 5 minutes on 2 CPU cores after the install, 6 from a fresh clone
# (2026-12-01: AP50 0.40 on the 32 validation images; the same script on the
# code before the fused BatchNorm gave 0.75: this small run's AP varies
# from run to run, see WORKSPACE.md); QUICKSTART_STEPS sets the steps.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-outputs/quickstart}"
STEPS="${QUICKSTART_STEPS:-1000}"
source scripts/lib/venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
PY="$VENV/bin/python"
START=$SECONDS
# A rerun starts over: training would resume, export refuses to overwrite.
rm -rf "$OUT"/{shapes,train,saved_model,predictions}
mkdir -p "$OUT"

step() { echo; echo "== $1 ($((SECONDS - START)) s)"; }

step "1/6 writing the synthetic dataset and sample pictures to $OUT/shapes"
"$PY" scripts/make_synthetic_dataset.py --output_dir="$OUT/shapes" \
  --num_train=256 --num_val=32 --image_size=128 \
  --sample_sizes=128x128,160x224,256x192,300x300

step "2/6 training for $STEPS steps (scripts/train.py)"
"$PY" scripts/train.py --experiment=demo_retinanet_synthetic \
  --model_dir="$OUT/train" --data_dir="$OUT/shapes" \
  --params_override="trainer.train_steps=$STEPS,trainer.checkpoint_interval=$STEPS"

step "3/6 evaluating on the validation split (COCO metrics)"
"$PY" scripts/train.py --config_file="$OUT/train/params.yaml" --mode=eval \
  --model_dir="$OUT/train" --data_dir="$OUT/shapes"

step "4/6 exporting a SavedModel (scripts/export.py)"
"$PY" scripts/export.py --config_file="$OUT/train/params.yaml" \
  --checkpoint="$OUT/train" --export_dir="$OUT/saved_model"

step "5/6 predicting on the sample pictures (scripts/predict.py)"
"$PY" scripts/predict.py --saved_model="$OUT/saved_model" \
  --input="$OUT/shapes/samples" --output_dir="$OUT/predictions" \
  --class_names="$OUT/shapes/class_names.txt"

step "6/6 drawing the SpineNet-49 architecture"
"$PY" scripts/draw_architecture.py --model_id=49 \
  --output="$OUT/spinenet49_architecture.png"

echo
echo "== summary ($((SECONDS - START)) s)"
"$PY" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
with open(os.path.join(out, 'train', 'eval_metrics.json')) as f:
  evaluation = json.load(f)
metrics = evaluation['metrics']
with open(os.path.join(out, 'predictions', 'detections.json')) as f:
  detections = json.load(f)
pictures = sorted(n for n in os.listdir(os.path.join(out, 'predictions'))
                  if n.endswith('.png'))
print(f"  detector     RetinaNet-SpineNet-Mobile-49XS, {evaluation['step']} steps")
print(f"  COCO eval    AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  "
      f"AP75 {metrics['AP75']:.3f}  (32 validation images)")
print(f"  checkpoints  {out}/train (TensorBoard: tensorboard --logdir {out}/train)")
print(f"  SavedModel   {out}/saved_model")
print(f"  predictions  {out}/predictions: {len(pictures)} PNGs, "
      f"{len(detections)} detections in detections.json")
print(f"  architecture {out}/spinenet49_architecture.png")
PY
