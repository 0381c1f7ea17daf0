"""README "Train on your own data" runs as written: a COCO-format dataset
-> records + label map -> a trained, evaluated (against the JSON), exported
detector -> predictions named by the label map. The installed commands,
in one folder, exactly as README gives them."""

import json
import os
import subprocess
import time

from tests import test_readme

# Measured on this walkthrough, seeded and deterministic (WORKSPACE.md "Own
# data"): AP50 0.310 on one 2-core CPU, 0.088 on an AMD EPYC without
# AVX-512, 0.310 (AP 0.152) on an AMD EPYC with AVX-512 BF16, no AMX
# (2026-12-07; the same code and packages: the 300-step run's trajectory
# depends on the CPU's float rounding). The bound is under all three; an
# untrained detector scores near 0. The recipe needs making robust.
MIN_AP50 = 0.05


def test_own_data_walkthrough_runs_as_written(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (block,) = [code for language, code in
              test_readme.readme_blocks(test_readme.OWN_DATA_SECTION)
              if language == 'bash']
  commands = test_readme.readme_commands(block)
  assert [c[0] for c in commands] == [
      'spinenet-make-dataset', 'spinenet-coco-to-tfrecord',
      'spinenet-coco-to-tfrecord', 'spinenet-train', 'spinenet-export',
      'spinenet-predict']
  outputs, start = [], time.time()
  for name, program, arguments in commands:
    result = subprocess.run(
        [*program, *arguments], capture_output=True, text=True, timeout=900,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
    assert result.returncode == 0, (name, result.stderr[-3000:])
    outputs.append(result.stdout)
    print(f"{name}: {time.time() - start:.0f} s")
    start = time.time()
  # The converter's last line sums up what it wrote and skipped.
  assert outputs[1].strip().splitlines()[-1].startswith(
      'Wrote 256 of 256 images')
  report = json.load(open('records/train_report.json'))
  assert report['skipped_total'] == 0 and report['images_written'] == 256
  # Trained and evaluated against the JSON, per class by name.
  evaluation = json.load(open('runs/mine/eval_metrics.json'))
  metrics = evaluation['metrics']
  print('walkthrough metrics:', metrics)
  assert metrics['AP50'] >= MIN_AP50, metrics
  assert {'AP/rectangle', 'AP/ellipse', 'AP/triangle'} <= set(metrics)
  # Predictions named by the label map.
  detections = json.load(open('predictions/mine/detections.json'))
  assert detections and {d['category_name'] for d in detections} <= {
      'rectangle', 'ellipse', 'triangle'}
  pictures = [n for n in os.listdir('predictions/mine') if n.endswith('.png')]
  assert len(pictures) == 32
