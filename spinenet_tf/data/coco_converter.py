"""COCO-format annotations and a folder of pictures -> detection TFRecords.

    summary = convert_coco('instances.json', 'pictures/', 'records/train',
                           include_masks=True, num_shards=8, num_workers=2)

writes `records/train-0000K-of-00008.tfrecord` (Model Garden's tf.Example
keys, `detection_records`), `records/train_label_map.json` (`label_map`)
and `records/train_report.json` (what was skipped, clipped or converted,
with the first examples of each). Image k of the JSON's list (after
skipping) goes to shard k mod num_shards, as in Model Garden's converter;
each worker process writes whole shards, each under a temporary name
renamed when complete, so a killed conversion leaves no partial shard.

Bad annotations never stop the conversion and are never dropped silently:
each kind in `KINDS` is counted, with the first `MAX_EXAMPLES` instances
named. A malformed JSON file, a wrong image folder or a category list that
cannot be used is a ValueError / FileNotFoundError naming it.
"""

import dataclasses
import io
import json
import math
import multiprocessing
import os
import struct
import sys
import time
import traceback
import zlib

import numpy as np
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils
import tensorflow as tf

from spinenet_tf import io_utils
from spinenet_tf.data import detection_records, label_map as label_map_lib

# kind -> what happened (annotations dropped, images skipped, boxes kept).
KINDS = {
    'annotation_invalid': 'annotation without an image_id or category_id '
                          '(dropped)',
    'annotation_unknown_image': 'annotation for an image id not listed in '
                                '"images" (dropped)',
    'unknown_category': 'annotation of a category id not in "categories" '
                        '(dropped)',
    'box_missing': 'annotation without a 4-number bbox (dropped)',
    'box_empty': 'box of zero or negative width or height (dropped)',
    'box_outside': 'box wholly outside the image (dropped)',
    'box_clipped': 'box partly outside the image (clipped to it, kept)',
    'polygon_too_few_points': 'polygon with fewer than 3 points (the polygon '
                              'dropped; the annotation too if none is left)',
    'mask_missing': 'no usable segmentation, with --include_masks (dropped)',
    'mask_size_mismatch': 'RLE mask whose size is not the image\'s '
                          '(dropped)',
    'mask_empty': 'mask without a pixel inside the image (dropped)',
    'image_invalid': 'image entry without an id or file_name (skipped)',
    'duplicate_image_id': 'image id listed before (the later entry skipped)',
    'image_missing': 'image file not found (skipped)',
    'image_unreadable': 'image file that is not a readable picture (skipped)',
    'image_size_mismatch': 'picture whose size (EXIF orientation applied) is '
                           'not the JSON\'s height x width (skipped)',
}
# Kinds that only report a change, not a loss.
KEPT_KINDS = ('box_clipped',)
MAX_EXAMPLES = 5
_EXIF_ORIENTATION = 0x0112
_AS_IS_FORMATS = {'JPEG': 'jpeg', 'MPO': 'jpeg', 'PNG': 'png'}


class _Skip(Exception):
  """One bad annotation or image: (kind, detail)."""

  def __init__(self, kind, detail):
    super().__init__(kind, detail)
    self.kind, self.detail = kind, detail


@dataclasses.dataclass
class Report:
  """Counts of each kind, the first examples of each, pictures converted
  (by reason), and what was written."""
  counts: dict = dataclasses.field(default_factory=dict)
  examples: dict = dataclasses.field(default_factory=dict)
  converted_images: dict = dataclasses.field(default_factory=dict)
  images_written: int = 0
  objects_written: int = 0

  def add(self, kind, detail, n=1):
    self.counts[kind] = self.counts.get(kind, 0) + n
    shown = self.examples.setdefault(kind, [])
    if len(shown) < MAX_EXAMPLES:
      shown.append(detail)

  def merge(self, other):
    for kind, n in other.counts.items():
      self.counts[kind] = self.counts.get(kind, 0) + n
      shown = self.examples.setdefault(kind, [])
      shown += other.examples.get(kind, [])[:MAX_EXAMPLES - len(shown)]
    for reason, n in other.converted_images.items():
      self.converted_images[reason] = (
          self.converted_images.get(reason, 0) + n)
    self.images_written += other.images_written
    self.objects_written += other.objects_written


def _read_bytes(path):
  if '://' in path:
    with tf.io.gfile.GFile(path, 'rb') as f:
      return f.read()
  with open(path, 'rb') as f:
    return f.read()


def _exists(path):
  return tf.io.gfile.exists(path) if '://' in path else os.path.isfile(path)


def load_coco_json(path):
  """The annotation file as a dict with 'images', 'annotations' and
  'categories' lists; errors name the file."""
  path = str(path)
  text = io_utils.read_text(path, '--annotation_file')
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f'--annotation_file {path}: not valid JSON ({e}).') \
        from None
  if not isinstance(data, dict):
    raise ValueError(f'--annotation_file {path}: expected a COCO object '
                     f'with "images", got {type(data).__name__}.')
  for key in ('images', 'categories'):
    if not isinstance(data.get(key), list):
      raise ValueError(f'--annotation_file {path}: "{key}" must be a list '
                       f'(COCO format), got {type(data.get(key)).__name__}.')
  annotations = data.get('annotations', [])
  if not isinstance(annotations, list):
    raise ValueError(f'--annotation_file {path}: "annotations" must be a '
                     'list.')
  return {'images': data['images'], 'annotations': annotations,
          'categories': data['categories']}


def _label_map(categories, remap, path):
  """The LabelMap of the JSON's categories: ids kept, or 1..K in id order
  with `remap`."""
  entries = []
  for k, category in enumerate(categories):
    if not isinstance(category, dict) or 'id' not in category:
      raise ValueError(f'--annotation_file {path}: categories[{k}] has no '
                       '"id".')
    if not isinstance(category['id'], int) or isinstance(category['id'],
                                                         bool):
      raise ValueError(f'--annotation_file {path}: categories[{k}] id '
                       f'{category["id"]!r} is not an integer.')
    entries.append((category['id'], category.get('name',
                                                 str(category['id']))))
  ids = [i for i, _ in entries]
  if len(set(ids)) != len(ids):
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    raise ValueError(f'--annotation_file {path}: category ids {repeated} '
                     'are listed twice.')
  if not entries:
    raise ValueError(f'--annotation_file {path}: no categories.')
  if not remap and min(ids) < 1:
    raise ValueError(f'--annotation_file {path}: category id {min(ids)} < 1 '
                     '(class 0 is background); pass --remap_categories to '
                     'number the categories 1..K.')
  entries.sort()
  return label_map_lib.label_map_from_entries(
      [((k + 1) if remap else i, name, i)
       for k, (i, name) in enumerate(entries)])


@dataclasses.dataclass
class _Plan:
  """What to write: the images in shard order and their annotations."""
  images: list            # image entries kept, in JSON order
  annotations: dict       # image id -> [annotation] (category remapped)
  image_dir: str
  include_masks: bool


def _plan(data, label_map, image_dir, include_masks, report):
  """The images and annotations to convert; bad entries counted."""
  images, seen = [], set()
  for k, image in enumerate(data['images']):
    if not isinstance(image, dict) or 'id' not in image or not isinstance(
        image.get('file_name'), str):
      report.add('image_invalid', f'images[{k}]')
      continue
    if image['id'] in seen:
      report.add('duplicate_image_id',
                 f'image id {image["id"]} ({image["file_name"]})')
      continue
    seen.add(image['id'])
    images.append(image)
  class_of = {annotation_id: class_id for class_id, annotation_id
              in label_map.annotation_id.items()}
  annotations = {}
  for k, annotation in enumerate(data['annotations']):
    if (not isinstance(annotation, dict) or 'image_id' not in annotation
        or 'category_id' not in annotation):
      report.add('annotation_invalid', f'annotations[{k}]')
      continue
    where = f'annotation id {annotation.get("id", k)}'
    if annotation['image_id'] not in seen:
      report.add('annotation_unknown_image',
                 f'{where}: image id {annotation["image_id"]}')
      continue
    if annotation['category_id'] not in class_of:
      report.add('unknown_category',
                 f'{where}: category id {annotation["category_id"]}')
      continue
    annotations.setdefault(annotation['image_id'], []).append(
        {**annotation, 'category_id': class_of[annotation['category_id']]})
  return _Plan(images, annotations, image_dir, include_masks)


def _picture(path, where):
  """(encoded bytes, height, width, format, reason converted or None): the
  file as it is when it is an RGB JPEG or PNG without EXIF rotation, else
  decoded, oriented, converted to RGB and re-encoded (PNG stays PNG)."""
  try:
    data = _read_bytes(path)
  except (FileNotFoundError, tf.errors.NotFoundError):
    raise _Skip('image_missing', where) from None
  except OSError as e:
    raise _Skip('image_unreadable', f'{where}: {e}') from None
  try:
    with Image.open(io.BytesIO(data)) as image:
      orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
      width, height = image.size
      as_is = _AS_IS_FORMATS.get(image.format)
      if as_is and image.mode == 'RGB' and orientation in (1, None):
        return data, height, width, as_is, None
      reason = (f'exif_orientation_{orientation}' if orientation not in
                (1, None) else f'mode_{image.mode}' if image.mode != 'RGB'
                else f'format_{image.format}')
      image_format = 'png' if as_is == 'png' else 'jpeg'
      image = ImageOps.exif_transpose(image).convert('RGB')
      out = io.BytesIO()
      image.save(out, format=image_format.upper(), quality=95)
      width, height = image.size
      return out.getvalue(), height, width, image_format, reason
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise _Skip('image_unreadable', f'{where}: {e}') from None


def _box(annotation, height, width, where, report):
  """Normalised (ymin, xmin, ymax, xmax) of the annotation's bbox, clipped
  to the image (counted)."""
  box = annotation.get('bbox')
  if (not isinstance(box, (list, tuple)) or len(box) != 4 or not all(
      isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
    raise _Skip('box_missing', where)
  x, y, w, h = (float(v) for v in box)
  if not (w > 0 and h > 0):
    raise _Skip('box_empty', f'{where}: bbox {list(box)}')
  x0, y0 = max(x, 0.0), max(y, 0.0)
  x1, y1 = min(x + w, float(width)), min(y + h, float(height))
  if x1 <= x0 or y1 <= y0:
    raise _Skip('box_outside', f'{where}: bbox {list(box)} in {width}x'
                f'{height}')
  if (x0, y0, x1, y1) != (x, y, x + w, y + h):
    report.add('box_clipped', f'{where}: bbox {list(box)} in {width}x'
               f'{height}')
  return y0 / height, x0 / width, y1 / height, x1 / width


def _mask_png(annotation, height, width, where, report):
  """The instance mask as a 0/1 PNG (polygons merged, RLE decoded)."""
  segmentation = annotation.get('segmentation')
  if isinstance(segmentation, list) and segmentation and all(
      isinstance(p, (list, tuple)) for p in segmentation):
    polygons = [p for p in segmentation if len(p) >= 6]
    if len(polygons) < len(segmentation):
      report.add('polygon_too_few_points', where,
                 len(segmentation) - len(polygons))
    if not polygons:
      raise _Skip('mask_missing', f'{where}: no polygon of 3 points or more')
    polygons = [p[:len(p) // 2 * 2] for p in polygons]
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
  elif isinstance(segmentation, dict) and 'counts' in segmentation:
    size = list(segmentation.get('size', []))
    if size != [height, width]:
      raise _Skip('mask_size_mismatch', f'{where}: RLE size {size}, image '
                  f'{[height, width]}')
    rle = (mask_utils.frPyObjects(segmentation, height, width)
           if isinstance(segmentation['counts'], list) else segmentation)
  else:
    raise _Skip('mask_missing', where)
  if not mask_utils.area(rle):
    raise _Skip('mask_empty', where)
  return grey_png(mask_utils.decode(rle))


def _png_chunk(kind, data):
  return (struct.pack('>I', len(data)) + kind + data +
          struct.pack('>I', zlib.crc32(kind + data)))


def grey_png(pixels):
  """uint8 [H, W] as an 8-bit greyscale PNG: rows unfiltered, zlib level 1
  (a 0/1 mask compresses about as well, and encodes ~4x faster than PIL's
  adaptive filters)."""
  height, width = pixels.shape
  rows = np.zeros((height, width + 1), np.uint8)  # filter byte 0 per row
  rows[:, 1:] = pixels
  return (b'\x89PNG\r\n\x1a\n'
          + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0,
                                            0, 0, 0))
          + _png_chunk(b'IDAT', zlib.compress(rows.tobytes(), 1))
          + _png_chunk(b'IEND', b''))


def _example(plan, image, report):
  """The serialized tf.Example of one image entry."""
  where = f'image id {image["id"]} ({image["file_name"]})'
  path = os.path.join(plan.image_dir, image['file_name'])
  encoded, height, width, image_format, reason = _picture(path, where)
  listed = (image.get('height'), image.get('width'))
  if listed != (None, None) and listed != (height, width):
    raise _Skip('image_size_mismatch', f'{where}: picture {height}x{width}, '
                f'JSON {listed[0]}x{listed[1]}')
  if reason:
    report.converted_images[reason] = report.converted_images.get(reason,
                                                                  0) + 1
  boxes, classes, crowd, areas, masks = [], [], [], [], []
  for annotation in plan.annotations.get(image['id'], ()):
    there = f'annotation id {annotation.get("id")} of {where}'
    try:
      box = _box(annotation, height, width, there, report)
      if plan.include_masks:
        masks.append(_mask_png(annotation, height, width, there, report))
    except _Skip as skip:
      report.add(skip.kind, skip.detail)
      continue
    boxes.append(box)
    classes.append(annotation['category_id'])
    crowd.append(int(bool(annotation.get('iscrowd', 0))))
    area = annotation.get('area')
    areas.append(float(area) if isinstance(area, (int, float)) else (
        (box[2] - box[0]) * (box[3] - box[1]) * height * width))
  report.images_written += 1
  report.objects_written += len(boxes)
  return detection_records.make_example(
      encoded, height, width, np.array(boxes, np.float64).reshape(-1, 4),
      classes, source_id=image['id'], is_crowd=crowd, areas=areas,
      masks=masks if plan.include_masks else None,
      filename=image['file_name'], image_format=image_format
  ).SerializeToString()


def _write_shards(plan, shards, paths, progress):
  """Writes the given shards; returns this process's Report."""
  report = Report()
  num_shards = len(paths)
  for shard in shards:
    with detection_records.AtomicRecordWriter(paths[shard]) as writer:
      for image in plan.images[shard::num_shards]:
        try:
          writer.write(_example(plan, image, report))
        except _Skip as skip:
          report.add(skip.kind, skip.detail)
        progress.add(1)
  return report


class _Progress:
  """A progress line on stderr, redrawn at most twice a second (in place
  on a terminal; every 10% otherwise)."""

  def __init__(self, total, counter=None):
    self.total, self.counter = total, counter
    self.done, self.start = 0, time.time()
    self._shown, self._last = -1, 0.0

  def add(self, n):
    if self.counter is not None:
      with self.counter.get_lock():
        self.counter.value += n
    else:
      self.done += n
      self.show()

  def show(self, final=False):
    done = self.counter.value if self.counter is not None else self.done
    now = time.time()
    tty = sys.stderr.isatty()
    decile = done * 10 // max(self.total, 1)
    if not final and (now - self._last < 0.5 or (not tty and
                                                   decile == self._shown)):
      return
    self._shown, self._last = decile, now
    width = 30
    filled = width * done // max(self.total, 1)
    rate = done / max(now - self.start, 1e-9)
    line = (f'[{"#" * filled}{"." * (width - filled)}] {done}/{self.total} '
            f'images, {rate:.1f}/s')
    end = '\n' if final or not tty else ''
    print(('\r' if tty else '') + line, end=end, file=sys.stderr, flush=True)


def _worker(plan, shards, paths, counter, results):
  try:
    report = _write_shards(plan, shards, paths, _Progress(0, counter))
    results.put((report, None))
  except BaseException:  # pylint: disable=broad-except
    results.put((None, traceback.format_exc()))


def _run_workers(plan, paths, num_workers, progress):
  """The shards written by `num_workers` processes; their merged Report."""
  if num_workers == 1:
    report = _write_shards(plan, range(len(paths)), paths, progress)
    progress.show(final=True)
    return report
  context = multiprocessing.get_context('fork')
  results = context.Queue()
  progress.counter = context.Value('q', 0)
  processes = [context.Process(
      target=_worker, args=(plan, range(w, len(paths), num_workers), paths,
                            progress.counter, results))
               for w in range(num_workers)]
  for process in processes:
    process.start()
  report, errors, received = Report(), [], 0
  while received < num_workers:
    progress.show()
    try:
      worker_report, error = results.get(timeout=0.2)
    except Exception:  # queue.Empty  pylint: disable=broad-except
      if any(p.exitcode not in (None, 0) for p in processes):
        errors.append('a worker process died (exit codes '
                      f'{[p.exitcode for p in processes]})')
        break
      continue
    received += 1
    if error:
      errors.append(error)
    else:
      report.merge(worker_report)
  for process in processes:
    process.join(timeout=5 if errors else None)
    if process.is_alive():
      process.terminate()
  if errors:
    raise RuntimeError('conversion failed in a worker process:\n' +
                       '\n'.join(errors))
  progress.show(final=True)
  return report


def output_paths(prefix):
  """{'label_map': ..., 'report': ...} beside the shards of `prefix`."""
  return {'label_map': f'{prefix}_label_map.json',
          'report': f'{prefix}_report.json'}


def _existing_outputs(prefix):
  shards = tf.io.gfile.glob(f'{prefix}-*-of-*.tfrecord')
  return shards + [p for p in output_paths(prefix).values()
                   if tf.io.gfile.exists(p)]


def convert_coco(annotation_file, image_dir, output_prefix,
                 include_masks=False, remap_categories=False, num_shards=0,
                 num_workers=0, overwrite=False):
  """Converts a COCO-format dataset; returns the summary dict written to
  the report file (see the module doc).

  Args:
    annotation_file: COCO-format JSON (images, annotations, categories).
    image_dir: the folder that `file_name`s are relative to.
    output_prefix: shards `{prefix}-0000K-of-0000N.tfrecord`.
    include_masks: also write image/object/mask (per-instance PNGs).
    remap_categories: class ids 1..K in category id order; else the JSON's
      ids (which must be >= 1).
    num_shards: 0: one per 1,000 images (at least 1).
    num_workers: processes (0: one per core, at most one per shard).
    overwrite: replace earlier outputs of this prefix; else they are an
      error.
  """
  annotation_file, image_dir = str(annotation_file), str(image_dir)
  output_prefix = str(output_prefix)
  data = load_coco_json(annotation_file)
  if not tf.io.gfile.isdir(image_dir):
    raise FileNotFoundError(f'--image_dir {image_dir}: not a folder.')
  earlier = _existing_outputs(output_prefix)
  if earlier and not overwrite:
    raise FileExistsError(f'--output_prefix {output_prefix}: {len(earlier)} '
                          f'earlier output file(s) exist, e.g. {earlier[0]}; '
                          'pass --overwrite to replace them.')
  label_map = _label_map(data['categories'], remap_categories,
                         annotation_file)
  report = Report()
  plan = _plan(data, label_map, image_dir, include_masks, report)
  files = [i['file_name'] for i in plan.images]
  if files and not any(_exists(os.path.join(image_dir, f))
                       for f in files[:1000]):
    raise FileNotFoundError(
        f'--image_dir {image_dir}: none of the first {min(len(files), 1000)}'
        f' pictures that {annotation_file} lists is there (e.g. '
        f'{files[0]!r}).')
  num_shards = num_shards or max(1, math.ceil(len(plan.images) / 1000))
  num_workers = min(num_workers or os.cpu_count() or 1, num_shards)
  paths = detection_records.shard_paths(output_prefix, num_shards)
  if os.path.dirname(output_prefix):
    tf.io.gfile.makedirs(os.path.dirname(output_prefix))
  report.merge(_run_workers(plan, paths, num_workers,
                            _Progress(len(plan.images))))
  for stale in set(earlier) - set(paths) - set(
      output_paths(output_prefix).values()):
    tf.io.gfile.remove(stale)
  outputs = output_paths(output_prefix)
  io_utils.atomic_write(outputs['label_map'], label_map.to_json())
  summary = _summary(data, plan, report, paths, annotation_file,
                     include_masks, remap_categories)
  io_utils.atomic_write(outputs['report'], json.dumps(summary, indent=1))
  return summary


def _summary(data, plan, report, paths, annotation_file, include_masks,
             remap):
  skipped = {k: n for k, n in report.counts.items() if k not in KEPT_KINDS}
  return {
      'annotation_file': annotation_file,
      'image_dir': plan.image_dir,
      'include_masks': include_masks,
      'remap_categories': remap,
      'images_listed': len(data['images']),
      'images_written': report.images_written,
      'annotations_listed': len(data['annotations']),
      'objects_written': report.objects_written,
      'shards': paths,
      'counts': dict(sorted(report.counts.items())),
      'skipped_total': sum(skipped.values()),
      'converted_images': dict(sorted(report.converted_images.items())),
      'kinds': {k: KINDS[k] for k in sorted(report.counts)},
      'examples': {k: report.examples[k] for k in sorted(report.examples)},
  }


def summary_line(summary, report_path):
  """One line: what was written, skipped and where the report is."""
  counts = summary['counts']
  lost = ', '.join(f'{k} {n}' for k, n in counts.items()
                   if k not in KEPT_KINDS) or 'nothing'
  kept = ', '.join(f'{k} {n}' for k, n in counts.items() if k in KEPT_KINDS)
  converted = sum(summary['converted_images'].values())
  return (f'Wrote {summary["images_written"]} of {summary["images_listed"]} '
          f'images ({summary["objects_written"]} objects) to '
          f'{len(summary["shards"])} shard(s); skipped: {lost}'
          + (f'; kept: {kept}' if kept else '')
          + (f'; {converted} pictures converted to RGB' if converted else '')
          + f'. Report: {report_path}')
