"""COCO-format -> TFRecord conversion speed: ours vs Model Garden's converter.

Both convert the same COCO-size dataset (640x480 JPEG scenes of 3..12
textured shapes, quality 90, each object's visible pixels as polygons or
RLE (as crowd: Model Garden's converter takes RLE only there), written to a temp dir) into the same number of shards with the same
number of processes, with and without instance masks. Model Garden:
`create_coco_tf_record` through `tfrecord_lib.write_tf_record_dataset`
(multiprocessing.Pool: workers build the examples, the parent writes);
ours: `coco_converter.convert_coco` (workers build and write whole
shards). The pictures are read once before timing (page cache); the two
converters alternate `rounds` times and the best round of each is kept.

  python scripts/bench_coco_conversion.py
  python scripts/bench_coco_conversion.py --quick
  python scripts/bench_coco_conversion.py --coco_images 500 --coco_workers 1
"""
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import flags
from PIL import Image
from pycocotools import mask as mask_utils

from spinenet_tf import cli
from spinenet_tf.data import coco_converter, synthetic_coco, synthetic_scenes

FLAGS = flags.FLAGS
HEIGHT, WIDTH = 480, 640


def _uncompressed(rle):
  """A compressed RLE as COCO's uncompressed form (runs from zeros)."""
  flat = mask_utils.decode(rle).ravel(order='F').tolist()
  runs = [len(list(run)) for _, run in itertools.groupby(flat)]
  return {'size': rle['size'], 'counts': [0] * flat[0] + runs}


def write_coco(directory, num_images, seed=0):
  """A COCO-size dataset: (annotation file, image folder)."""
  image_dir = os.path.join(directory, 'pictures')
  os.makedirs(image_dir)
  images, annotations = [], []
  for i in range(num_images):
    image, boxes, classes, owner = synthetic_scenes.draw_scene(
        np.random.default_rng([seed, i]), HEIGHT, WIDTH, 3, 12)[:4]
    name = f'{i + 1:012d}.jpg'
    Image.fromarray(image).save(os.path.join(image_dir, name), quality=90)
    images.append({'id': 3 * i + 1, 'file_name': name, 'height': HEIGHT,
                   'width': WIDTH})
    annotations += synthetic_coco.scene_annotations(
        boxes, classes, owner, 3 * i + 1, len(annotations) + 1)
  for annotation in annotations:
    # Model Garden's converter takes RLE only for crowd objects and only
    # uncompressed (it fails on a non-crowd or a compressed RLE): RLE
    # regions (with holes) are written as crowd, uncompressed.
    if isinstance(annotation['segmentation'], dict):
      annotation['iscrowd'] = 1
      annotation['segmentation'] = _uncompressed(annotation['segmentation'])
  path = os.path.join(directory, 'instances.json')
  with open(path, 'w') as f:
    json.dump({'images': images, 'annotations': annotations, 'categories': [
        {'id': i, 'name': n} for i, n in
        enumerate(synthetic_scenes.CLASS_NAMES) if i > 0]}, f)
  return path, image_dir


# Model Garden's converter module defines absl flags on import (among them
# --num_shards and --include_masks, which our command defines too): it runs
# in a child process that times the conversion alone.
_MODEL_GARDEN = """
import json, sys, time
from official.vision.data import create_coco_tf_record as mg
from official.vision.data import tfrecord_lib
annotation_file, image_dir, prefix, masks, shards, workers = sys.argv[1:]
start = time.perf_counter()
by_image, names = mg._load_object_annotations(annotation_file)
with open(annotation_file) as f:
  images = json.load(f)['images']
tfrecord_lib.write_tf_record_dataset(
    prefix, mg.generate_annotations(
        images, [image_dir], img_to_obj_annotation=by_image,
        id_to_name_map=names, include_masks=masks == 'True'),
    mg.create_tf_example, int(shards), multiple_processes=int(workers))
print(time.perf_counter() - start)
"""


def model_garden(annotation_file, image_dir, prefix, include_masks,
                 num_shards, num_workers):
  """Model Garden's conversion in a child process; its seconds."""
  result = subprocess.run(
      [sys.executable, '-c', _MODEL_GARDEN, annotation_file, image_dir,
       prefix, str(include_masks), str(num_shards), str(num_workers)],
      capture_output=True, text=True, check=False,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  if result.returncode:
    raise RuntimeError(f'Model Garden converter failed:\n{result.stderr}')
  return float(result.stdout.split()[-1])


def ours(annotation_file, image_dir, prefix, include_masks, num_shards,
         num_workers):
  """Our conversion in this process; its seconds."""
  start = time.perf_counter()
  coco_converter.convert_coco(annotation_file, image_dir, prefix,
                              include_masks=include_masks,
                              num_shards=num_shards, num_workers=num_workers,
                              overwrite=True)
  return time.perf_counter() - start


CONVERTERS = {'Model Garden create_coco_tf_record': model_garden,
              'spinenet_tf convert_coco': ours}


def measure(num_images=200, quick=False, num_workers=2, num_shards=4,
            rounds=2):
  """Rows {converter, masks, images_per_s, speedup, ...}."""
  if quick:
    num_images, rounds = 24, 1
  rows = []
  with tempfile.TemporaryDirectory() as directory:
    annotation_file, image_dir = write_coco(directory, num_images)
    jpeg_kb = np.mean([os.path.getsize(os.path.join(image_dir, n))
                       for n in os.listdir(image_dir)]) / 1024
    for include_masks in (False, True):
      best = dict.fromkeys(CONVERTERS, 0.0)
      for _ in range(rounds):
        for name, convert in CONVERTERS.items():
          out = os.path.join(directory, 'out')
          os.makedirs(out)
          seconds = convert(annotation_file, image_dir,
                            os.path.join(out, 'train'), include_masks,
                            num_shards, num_workers)
          best[name] = max(best[name], num_images / seconds)
          shutil.rmtree(out)
      reference = best['Model Garden create_coco_tf_record']
      rows += [{'converter': name, 'masks': include_masks,
                'images_per_s': rate, 'speedup': rate / reference,
                'num_images': num_images, 'num_workers': num_workers,
                'num_shards': num_shards, 'rounds': rounds,
                'jpeg_kb': jpeg_kb} for name, rate in best.items()]
  return rows


def table(rows):
  lines = [f"COCO-format -> TFRecord, {rows[0]['num_images']} pictures "
           f"{WIDTH}x{HEIGHT} (mean JPEG {rows[0]['jpeg_kb']:.0f} KiB), "
           f"{rows[0]['num_workers']} processes, {rows[0]['num_shards']} "
           f"shards, best of {rows[0]['rounds']} rounds:", '',
           '| converter | masks | images/s | vs Model Garden |',
           '|---|---|---:|---:|']
  lines += [f"| {r['converter']} | {'yes' if r['masks'] else 'no'} | "
            f"{r['images_per_s']:.1f} | {r['speedup']:.2f}x |" for r in rows]
  return '\n'.join(lines)


def define_flags():
  """The benchmark's flags (defined by `run`, not on import)."""
  flags.DEFINE_integer('coco_images', 200, 'Pictures in the dataset.')
  flags.DEFINE_integer('coco_workers', 2, 'Processes of each converter.')
  flags.DEFINE_integer('coco_shards', 4, 'Output shards.')
  flags.DEFINE_integer('coco_rounds', 2, 'Alternating timed rounds.')
  flags.DEFINE_bool('quick', False, '24 pictures, 1 round.')


def main(argv):
  cli.refuse_arguments(argv)
  print(table(measure(FLAGS.coco_images, FLAGS.quick, FLAGS.coco_workers,
                      FLAGS.coco_shards, FLAGS.coco_rounds)))


def run():
  define_flags()
  cli.run(main, doc=__doc__)
