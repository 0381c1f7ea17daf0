"""Host input pipeline speed: ours vs Model Garden's RetinaNet parser.

Both read the same TFRecords (COCO-like: textured 640x480 JPEGs, quality
90, 5 boxes each, written to a temp dir) in training mode at 640x640: scale
jitter [0.5, 2.0], random crop, random flip, float32 output, the same batch
size, tf.data AUTOTUNE parallelism, records shuffled and repeated. After
warm-up batches, images/s over `num_images` images, the two pipelines
alternating `rounds` times; the best round of each is reported, with the
process CPU time per image in that round (less sensitive to other load on
the machine than wall time).

Model Garden: `tf_example_decoder.TfExampleDecoder` + `retinanet_input.Parser`
(decode the whole image, normalise, flip, resize to the jittered size, crop,
pad, and label the anchors: its labels are per-anchor targets). Ours:
`build_detection_dataset` (header, decode only the crop window with DCT
scaling, resize once, flip, normalise, pad; labels are padded boxes and
classes: anchor labelling runs in the model loss, on the accelerator).

The stage table times single calls of the pieces (graph mode, one core
busy) to show where the time goes.

  python scripts/bench_input_pipeline.py                 # 600 images/round
  python scripts/bench_input_pipeline.py --quick
  python scripts/bench_input_pipeline.py --num_images 1000 --batch_size 16
"""
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import flags
from official.vision.dataloaders import retinanet_input
from official.vision.dataloaders import tf_example_decoder
from official.vision.ops import anchor, preprocess_ops

from benchmarks.report import machine_line
from spinenet_tf import cli
from spinenet_tf.data import detection_input, detection_parser
from spinenet_tf.data import detection_records, image_ops
from spinenet_tf.data import skipping, synthetic_shapes

OUTPUT_SIZE = 640
SCALE_RANGE = (0.5, 2.0)

FLAGS = flags.FLAGS


def write_records(directory, num_records, seed=0):
  """COCO-like JPEG records: 640x480 textured scenes with 5 shapes."""
  def examples():
    for i in range(num_records):
      image, boxes, classes, _ = synthetic_shapes.draw_scene(
          np.random.default_rng([seed, i]), 480, 640, num_objects=5)
      yield detection_records.make_example(
          tf.io.encode_jpeg(image, quality=90).numpy(), 480, 640,
          boxes / [480, 640, 480, 640], classes, source_id=i + 1)
  return detection_records.write_tfrecords(
      os.path.join(directory, 'bench'), examples(), num_shards=4)


def ours(pattern, batch_size):
  return detection_input.build_detection_dataset(
      'tfrecord', True, OUTPUT_SIZE, batch_size, file_pattern=pattern,
      scale_range=SCALE_RANGE, shuffle_buffer=256).repeat()


def model_garden_parser():
  return retinanet_input.Parser(
      output_size=[OUTPUT_SIZE, OUTPUT_SIZE], min_level=3, max_level=7,
      num_scales=3, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=3.0,
      aug_rand_hflip=True, aug_scale_min=SCALE_RANGE[0],
      aug_scale_max=SCALE_RANGE[1], max_num_instances=100, dtype='float32')


def model_garden(pattern, batch_size):
  decoder = tf_example_decoder.TfExampleDecoder()
  parse = model_garden_parser().parse_fn(is_training=True)
  files = tf.data.Dataset.list_files(pattern, shuffle=True)
  ds = files.interleave(tf.data.TFRecordDataset,
                        num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.shuffle(256).repeat()
  ds = ds.map(lambda record: parse(decoder.decode(record)),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def throughput(iterator, batch_size, num_images, warmup_batches=5):
  """(images/s, process CPU ms per image) over `num_images` images."""
  for _ in range(warmup_batches):
    next(iterator)
  batches = max(1, num_images // batch_size)
  start, cpu = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(iterator)
  images = batches * batch_size
  return (images / (time.perf_counter() - start),
          1000 * (time.process_time() - cpu) / images)


def _time_calls(fn, inputs, repeats=1):
  fn(inputs[0])  # trace
  start = time.perf_counter()
  for _ in range(repeats):
    for x in inputs:
      fn(x)
  return 1000 * (time.perf_counter() - start) / (repeats * len(inputs))


def stage_rows(records):
  """ms per image of pipeline stages, one call at a time."""
  examples = [detection_records.decode_example(r) for r in records]
  encoded = [e['encoded'] for e in examples]
  boxes = [e['boxes'] for e in examples]
  seed = tf.constant([1, 2], tf.int64)
  mg_decoder = tf_example_decoder.TfExampleDecoder()
  mg_parse = model_garden_parser().parse_fn(is_training=True)
  image = tf.zeros([480, 640, 3], tf.uint8)
  scaled = tf.zeros([480, 640, 3], tf.float32)
  anchor_boxes = anchor.build_anchor_generator(3, 7, 3, [0.5, 1.0, 2.0], 3.0)(
      image_size=(OUTPUT_SIZE, OUTPUT_SIZE))
  labeler = anchor.AnchorLabeler(0.5, 0.5)
  pixel_boxes = boxes[0] * [480, 640, 480, 640]
  stages = [
      ('tf.Example parse (ours)', 'both',
       tf.function(detection_records.decode_example), records),
      ('JPEG decode, whole image', 'Model Garden',
       tf.function(lambda e: tf.io.decode_jpeg(e, channels=3)), encoded),
      ('JPEG header + crop decode, scale 2 (320x320 window)', 'ours',
       tf.function(lambda e: tf.image.decode_and_crop_jpeg(
           e, [80, 160, 320, 320], channels=3)), encoded),
      ('skip guard: parse inside a one-element dataset', 'ours',
       tf.function(lambda r: skipping.guarded(
           detection_records.decode_example, r)), records),
      ('normalise 640x480, broadcasting [3] constants', 'Model Garden',
       tf.function(preprocess_ops.normalize_image), [image]),
      ('normalise 640x480 as [480, 1920] rows', 'ours',
       tf.function(image_ops.normalize_image), [image]),
      ('resize 640x480 -> 1280x960 (scale 2), then crop', 'Model Garden',
       tf.function(lambda x: tf.image.resize(
           tf.cast(x, tf.float32), [960, 1280])[:640, :640]), [image]),
      ('resize 320x320 crop -> 640x640', 'ours',
       tf.function(lambda x: tf.image.resize(x[:320, :320], [640, 640])),
       [image]),
      ('pad to 640x640', 'both',
       tf.function(lambda x: tf.image.pad_to_bounding_box(
           x, 0, 0, 640, 640)), [scaled]),
      ('anchor labelling (76,725 anchors, 5 boxes)', 'Model Garden',
       tf.function(lambda b: labeler.label_anchors(
           anchor_boxes, b, tf.ones([5, 1], tf.int64))), [pixel_boxes]),
      ('whole parser, training (ours)', 'ours',
       tf.function(lambda e: detection_parser.parse_train(
           e, seed, OUTPUT_SIZE, SCALE_RANGE)), examples),
      ('whole decoder + parser, training (Model Garden)', 'Model Garden',
       tf.function(lambda r: mg_parse(mg_decoder.decode(r))), records),
  ]
  return [{'stage': name, 'in': where, 'ms_per_image': _time_calls(fn, xs)}
          for name, where, fn, xs in stages]


def measure(num_images=600, quick=False, num_records=200, batch_size=8,
            rounds=3):
  """Returns (throughput rows, stage rows); see the module doc."""
  if quick:
    num_images, num_records, rounds = 64, 40, 1
  with tempfile.TemporaryDirectory() as directory:
    files = write_records(directory, num_records)
    pattern = os.path.join(directory, 'bench-*.tfrecord')
    records = [r for r in tf.data.TFRecordDataset(files).take(
        8 if quick else 40)]
    jpeg_kb = np.mean([len(detection_records.decode_example(r)['encoded']
                           .numpy()) for r in records]) / 1024
    pipelines = {
        'Model Garden retinanet_input.Parser': (
            model_garden, 'in the pipeline (per-anchor targets)'),
        'spinenet_tf build_detection_dataset': (
            ours, 'in the model loss (accelerator)'),
    }
    iterators = {name: iter(make(pattern, batch_size))
                 for name, (make, _) in pipelines.items()}
    best = dict.fromkeys(pipelines, (0.0, 0.0))
    for _ in range(rounds):
      for name, iterator in iterators.items():
        best[name] = max(best[name],
                         throughput(iterator, batch_size, num_images))
    reference = best['Model Garden retinanet_input.Parser'][0]
    rows = [{'pipeline': name, 'images_per_s': best[name][0],
             'cpu_ms_per_image': best[name][1],
             'speedup': best[name][0] / reference, 'anchor_labelling': where,
             'batch_size': batch_size, 'num_images': num_images,
             'rounds': rounds, 'jpeg_kb': jpeg_kb}
            for name, (_, where) in pipelines.items()]
    return rows, stage_rows(records)


def tables(rows, stages):
  lines = ['| pipeline | images/s | vs Model Garden | CPU ms/image | '
           'anchor labelling |', '|---|---:|---:|---:|---|']
  lines += [f"| {r['pipeline']} | {r['images_per_s']:.1f} | "
            f"{r['speedup']:.2f}x | {r['cpu_ms_per_image']:.1f} | "
            f"{r['anchor_labelling']} |" for r in rows]
  lines += ['', '| stage (one call at a time) | used by | ms/image |',
            '|---|---|---:|']
  lines += [f"| {s['stage']} | {s['in']} | {s['ms_per_image']:.2f} |"
            for s in stages]
  return '\n'.join(lines)


def define_flags():
  """The benchmark's flags (defined by `run`, not on import)."""
  flags.DEFINE_integer('num_images', 600, 'Timed images per pipeline and round.')
  flags.DEFINE_integer('num_records', 200, 'Distinct JPEG records written.')
  flags.DEFINE_integer('batch_size', 8, 'Batch size of both pipelines.')
  flags.DEFINE_integer('rounds', 3, 'Alternating timed rounds per pipeline.')
  flags.DEFINE_bool('quick', False, '40 records, 64 images, 1 round.')


def main(argv):
  cli.refuse_arguments(argv)
  rows, stages = measure(FLAGS.num_images, FLAGS.quick, FLAGS.num_records,
                         FLAGS.batch_size, FLAGS.rounds)
  print(f'{machine_line()}, TF {tf.__version__}; '
        f"batch {rows[0]['batch_size']}, {rows[0]['num_images']} images per "
        f"round, best of {rows[0]['rounds']} rounds, mean JPEG "
        f"{rows[0]['jpeg_kb']:.0f} KiB (640x480)\n")
  print(tables(rows, stages))


def run():
  define_flags()
  cli.run(main, doc=__doc__)
