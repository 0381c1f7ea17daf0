"""spinenet-coco-to-tfrecord: COCO-format JSON + pictures -> records.

The oracle is Model Garden's converter (official/vision/data/
create_coco_tf_record.py) on the same JSON and pictures; the built-in
synthetic data in COCO format must convert to the records the built-in
TFRecord writer makes of the same scenes.
"""

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from spinenet_tf.data import (coco_converter, detection_records, label_map,
                              synthetic_coco, synthetic_shapes)

MASK_KEY = 'image/object/mask'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _records(pattern):
  files = sorted(tf.io.gfile.glob(pattern))
  return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def _masks(serialized):
  feature = tf.train.Example.FromString(serialized).features.feature
  return [np.asarray(Image.open(io.BytesIO(png)))
          for png in feature[MASK_KEY].bytes_list.value]


def _decoded(serialized):
  example = detection_records.decode_example(serialized)
  return {k: v.numpy() for k, v in example.items()}


def _jpeg(path, height, width, seed=0, mode='RGB', exif=None, fmt='JPEG'):
  rng = np.random.default_rng(seed)
  image = Image.fromarray(rng.integers(0, 255, (height, width, 3),
                                       dtype=np.uint8)).convert(mode)
  kwargs = {'exif': exif} if exif is not None else {}
  image.save(path, format=fmt, **kwargs)


def _coco_case(tmp_path):
  """A COCO val2017-like case: non-contiguous image ids, crowd RLE
  (uncompressed counts), a compressed RLE, multi-polygon objects."""
  image_dir = tmp_path / 'pictures'
  image_dir.mkdir()
  images, annotations = [], []
  sizes = {139: (48, 64), 285: (40, 40), 632: (64, 48), 724: (32, 56)}
  for k, (image_id, (h, w)) in enumerate(sizes.items()):
    _jpeg(image_dir / f'{image_id:012d}.jpg', h, w, seed=k)
    images.append({'id': image_id, 'file_name': f'{image_id:012d}.jpg',
                   'height': h, 'width': w})
  def polygon(x, y, s):
    return [x, y, x + s, y, x + s, y + s, x, y + s * 0.8]
  a = 1
  for image_id, (h, w) in sizes.items():
    for j in range(3):
      x, y = 2.5 + 9 * j, 3.25 + 5 * j
      annotations.append({'id': a, 'image_id': image_id,
                          'category_id': [1, 18, 90][j],
                          'bbox': [x, y, 8.0, 8.0], 'area': 57.5 + j,
                          'iscrowd': 0,
                          'segmentation': [polygon(x, y, 8.0),
                                           polygon(x + 1, y + 1, 3.0)]})
      a += 1
  crowd = np.zeros((40, 40), np.uint8)
  crowd[5:20, 10:30] = 1
  flat = crowd.ravel(order='F').tolist()  # COCO's uncompressed RLE:
  counts = [0] * flat[0] + [len(list(run)) for _, run in  # runs from 0s
                            itertools.groupby(flat)]
  annotations.append({'id': a, 'image_id': 285, 'category_id': 1,
                      'bbox': [10, 5, 20, 15], 'area': 300.0, 'iscrowd': 1,
                      'segmentation': {'size': [40, 40], 'counts': counts}})
  categories = [{'id': i, 'name': n} for i, n in
                ((1, 'person'), (18, 'dog'), (90, 'toothbrush'))]
  path = tmp_path / 'instances.json'
  path.write_text(json.dumps({'images': images, 'annotations': annotations,
                              'categories': categories}))
  return path, image_dir


def test_records_equal_model_gardens_converter(tmp_path):
  from official.vision.data import create_coco_tf_record as mg
  from official.vision.data import tfrecord_lib
  annotation_file, image_dir = _coco_case(tmp_path)
  summary = coco_converter.convert_coco(
      annotation_file, image_dir, tmp_path / 'ours/train',
      include_masks=True, num_shards=2, num_workers=1)
  assert summary['counts'] == {} and summary['images_written'] == 4
  assert summary['objects_written'] == 13

  by_image, names = mg._load_object_annotations(str(annotation_file))
  images = json.loads(annotation_file.read_text())['images']
  os.makedirs(tmp_path / 'mg')
  tfrecord_lib.write_tf_record_dataset(
      str(tmp_path / 'mg/train'),
      mg.generate_annotations(images, [str(image_dir)],
                              img_to_obj_annotation=by_image,
                              id_to_name_map=names, include_masks=True),
      mg.create_tf_example, 2, multiple_processes=0)
  for shard in range(2):
    name = f'train-{shard:05d}-of-00002.tfrecord'
    ours = _records(str(tmp_path / 'ours' / name))
    theirs = _records(str(tmp_path / 'mg' / name))
    assert len(ours) == len(theirs) == 2
    for mine, reference in zip(ours, theirs):
      a, b = _decoded(mine), _decoded(reference)
      assert a['source_id'] == b['source_id']
      assert a['encoded'] == b['encoded']
      np.testing.assert_allclose(a['boxes'], b['boxes'], atol=1e-6)
      for key in ('classes', 'is_crowd', 'areas'):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
      masks_a, masks_b = _masks(mine), _masks(reference)
      assert len(masks_a) == len(masks_b) == len(a['classes'])
      for m_a, m_b in zip(masks_a, masks_b):
        np.testing.assert_array_equal(m_a, m_b)
        assert m_a.max() == 1
  crowd = [_decoded(r) for r in _records(str(tmp_path / 'ours/train-*'))
           if _decoded(r)['is_crowd'].any()]
  assert len(crowd) == 1 and crowd[0]['source_id'] == b'285'


def test_synthetic_coco_converts_to_the_builtin_records(tmp_path):
  """The same scenes through COCO JSON + converter and through the
  built-in writer: the same images, boxes, classes and areas; masks equal
  the visible pixels of each object (polygons and RLE)."""
  synthetic_coco.write_coco_dataset(tmp_path / 'coco', synthetic_shapes,
                                    num_train=12, num_val=2, image_size=64,
                                    seed=3)
  synthetic_shapes.write_synthetic_dataset(tmp_path / 'native', 12, 2, 64,
                                           seed=3)
  coco_converter.convert_coco(
      synthetic_coco.annotation_file(tmp_path / 'coco', 'train'),
      tmp_path / 'coco/train', tmp_path / 'records/train',
      include_masks=True, num_shards=1, num_workers=1)
  ours = _records(str(tmp_path / 'records/train-*'))
  native = _records(synthetic_shapes.file_pattern(tmp_path / 'native',
                                                  'train'))
  assert len(ours) == len(native) == 12
  for k, (mine, reference) in enumerate(zip(ours, native)):
    a, b = _decoded(mine), _decoded(reference)
    assert a['encoded'] == b['encoded'] and a['source_id'] == b['source_id']
    np.testing.assert_allclose(a['boxes'], b['boxes'], atol=1e-6)
    np.testing.assert_array_equal(a['classes'], b['classes'])
    np.testing.assert_array_equal(a['areas'], b['areas'])
    owner = synthetic_shapes.draw_scene(np.random.default_rng([3, 0, k]),
                                        64, 64)[3]
    for i, m in enumerate(_masks(mine)):
      np.testing.assert_array_equal(m, owner == i + 1)
  names = label_map.read_label_map(tmp_path / 'records/train_label_map.json')
  assert names.names == {1: 'rectangle', 2: 'ellipse', 3: 'triangle'}
  assert names.num_classes == 4


def test_bad_annotations_are_counted_in_the_report(tmp_path):
  image_dir = tmp_path / 'pictures'
  image_dir.mkdir()
  for name, (h, w) in {'a.jpg': (40, 50), 'b.jpg': (30, 30),
                       'c.jpg': (20, 20)}.items():
    _jpeg(image_dir / name, h, w)
  (image_dir / 'broken.jpg').write_bytes(b'not a picture')
  square = [[1, 1, 9, 1, 9, 9, 1, 9]]
  def ann(i, image_id, bbox, **extra):
    return {'id': i, 'image_id': image_id, 'category_id': 1, 'bbox': bbox,
            'iscrowd': 0, 'segmentation': square, **extra}
  data = {
      'images': [{'id': 1, 'file_name': 'a.jpg', 'height': 40, 'width': 50},
                 {'id': 2, 'file_name': 'b.jpg', 'height': 30, 'width': 30},
                 {'id': 2, 'file_name': 'c.jpg', 'height': 20, 'width': 20},
                 {'id': 3, 'file_name': 'gone.jpg', 'height': 9, 'width': 9},
                 {'id': 4, 'file_name': 'broken.jpg'},
                 {'id': 5, 'file_name': 'c.jpg', 'height': 21, 'width': 20}],
      'categories': [{'id': 1, 'name': 'thing'}],
      'annotations': [
          ann(1, 1, [1, 1, 8, 8]),                         # good
          ann(2, 1, [1, 1, 0, 8]),                         # box_empty
          ann(3, 1, [45, 30, 10, 20], segmentation=[[45, 30, 49, 30, 49, 39]]),
          ann(4, 1, [60, 50, 5, 5]),                       # box_outside
          ann(5, 1, [1, 1, 8, 8], segmentation=[[1, 1, 5, 5], square[0]]),
          ann(6, 1, [1, 1, 8, 8], segmentation=[[1, 1, 5, 5]]),
          ann(7, 1, [1, 1, 8, 8], category_id=7),          # unknown_category
          ann(8, 99, [1, 1, 8, 8]),                    # unknown image
          ann(9, 2, [1, 1, 8, 8], segmentation={'size': [20, 20],
                                                'counts': [400]}),
          ann(10, 2, [1, 1, 8, 8], segmentation=[[31, 31, 35, 31, 35, 35]]),
          ann(11, 2, [1, 1, 8, 8]),                        # good
      ]}
  path = tmp_path / 'instances.json'
  path.write_text(json.dumps(data))
  summary = coco_converter.convert_coco(path, image_dir,
                                        tmp_path / 'out/train',
                                        include_masks=True, num_workers=1)
  assert summary['counts'] == {
      'box_clipped': 1, 'box_empty': 1, 'box_outside': 1,
      'duplicate_image_id': 1, 'image_missing': 1, 'image_unreadable': 1,
      'image_size_mismatch': 1, 'mask_missing': 1, 'mask_size_mismatch': 1,
      'mask_empty': 1, 'polygon_too_few_points': 2, 'unknown_category': 1,
      'annotation_unknown_image': 1}
  assert summary['images_written'] == 2
  assert summary['objects_written'] == 4  # 1, 3 (clipped), 5, 11
  assert summary['examples']['unknown_category'] == [
      'annotation id 7: category id 7']
  assert 'gone.jpg' in summary['examples']['image_missing'][0]
  report = json.loads((tmp_path / 'out/train_report.json').read_text())
  assert report['counts'] == summary['counts']
  records = [_decoded(r) for r in _records(str(tmp_path / 'out/train-*'))]
  clipped = records[0]['boxes'][1]
  np.testing.assert_allclose(clipped, [30 / 40, 45 / 50, 1.0, 1.0])
  line = coco_converter.summary_line(summary, 'R')
  assert line.startswith('Wrote 2 of 6 images (4 objects) to 1 shard(s); '
                         'skipped: annotation_unknown_image 1, box_empty 1')
  assert line.endswith('; kept: box_clipped 1. Report: R')


def test_pictures_are_oriented_and_converted_to_rgb(tmp_path):
  image_dir = tmp_path / 'pictures'
  image_dir.mkdir()
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90 degrees clockwise to view
  _jpeg(image_dir / 'rotated.jpg', 20, 30, exif=exif.tobytes())
  _jpeg(image_dir / 'grey.jpg', 20, 30, mode='L')
  _jpeg(image_dir / 'cmyk.jpg', 20, 30, mode='CMYK')
  _jpeg(image_dir / 'alpha.png', 20, 30, mode='RGBA', fmt='PNG')
  _jpeg(image_dir / 'palette.png', 20, 30, mode='P', fmt='PNG')
  names = ['rotated.jpg', 'grey.jpg', 'cmyk.jpg', 'alpha.png', 'palette.png']
  images = [{'id': k + 1, 'file_name': n,
             'height': 30 if k == 0 else 20, 'width': 20 if k == 0 else 30}
            for k, n in enumerate(names)]
  path = tmp_path / 'instances.json'
  path.write_text(json.dumps({'images': images, 'annotations': [],
                              'categories': [{'id': 1, 'name': 'x'}]}))
  summary = coco_converter.convert_coco(path, image_dir, tmp_path / 'o/t',
                                        num_workers=1)
  assert summary['images_written'] == 5 and summary['counts'] == {}
  assert summary['converted_images'] == {
      'exif_orientation_6': 1, 'mode_CMYK': 1, 'mode_L': 1, 'mode_P': 1,
      'mode_RGBA': 1}
  for record, image in zip(_records(str(tmp_path / 'o/t-*')), images):
    decoded = tf.io.decode_image(_decoded(record)['encoded']).numpy()
    assert decoded.shape == (image['height'], image['width'], 3)


def test_workers_write_the_same_shards_as_one_process(tmp_path):
  synthetic_coco.write_coco_dataset(tmp_path / 'coco', synthetic_shapes,
                                    num_train=10, num_val=1, image_size=64)
  args = (synthetic_coco.annotation_file(tmp_path / 'coco', 'train'),
          tmp_path / 'coco/train')
  one = coco_converter.convert_coco(*args, tmp_path / 'one/t', True,
                                    num_shards=3, num_workers=1)
  two = coco_converter.convert_coco(*args, tmp_path / 'two/t', True,
                                    num_shards=3, num_workers=2)
  assert one['objects_written'] == two['objects_written'] > 10
  for shard in range(3):
    name = f't-{shard:05d}-of-00003.tfrecord'
    assert (tmp_path / 'one' / name).read_bytes() == (
        tmp_path / 'two' / name).read_bytes()


def test_bad_files_are_one_error_naming_them(tmp_path):
  annotation_file, image_dir = _coco_case(tmp_path)
  broken = tmp_path / 'broken.json'
  broken.write_text('{"images": [')
  with pytest.raises(ValueError, match='broken.json: not valid JSON'):
    coco_converter.convert_coco(broken, image_dir, tmp_path / 'o/t')
  with pytest.raises(FileNotFoundError, match='--image_dir .*: none of the '
                     'first 4 pictures'):
    coco_converter.convert_coco(annotation_file, tmp_path, tmp_path / 'o/t')
  with pytest.raises(FileNotFoundError, match='not a folder'):
    coco_converter.convert_coco(annotation_file, tmp_path / 'nope',
                                tmp_path / 'o/t')
  coco_converter.convert_coco(annotation_file, image_dir, tmp_path / 'o/t',
                              num_shards=3, num_workers=1)
  with pytest.raises(FileExistsError, match='pass --overwrite'):
    coco_converter.convert_coco(annotation_file, image_dir, tmp_path / 'o/t')
  coco_converter.convert_coco(annotation_file, image_dir, tmp_path / 'o/t',
                              num_shards=2, num_workers=1, overwrite=True)
  assert sorted(os.listdir(tmp_path / 'o')) == [
      't-00000-of-00002.tfrecord', 't-00001-of-00002.tfrecord',
      't_label_map.json', 't_report.json']
  zero = json.loads(annotation_file.read_text())
  zero['categories'].append({'id': 0, 'name': 'other'})
  annotation_file.write_text(json.dumps(zero))
  with pytest.raises(ValueError, match='category id 0 < 1 .* pass '
                     '--remap_categories'):
    coco_converter.convert_coco(annotation_file, image_dir, tmp_path / 'p/t')
  coco_converter.convert_coco(annotation_file, image_dir, tmp_path / 'p/t',
                              remap_categories=True, num_workers=1)
  remapped = label_map.read_label_map(tmp_path / 'p/t_label_map.json')
  assert remapped.names == {1: 'other', 2: 'person', 3: 'dog',
                            4: 'toothbrush'}
  assert remapped.annotation_id == {1: 0, 2: 1, 3: 18, 4: 90}
  classes = np.concatenate([_decoded(r)['classes']
                            for r in _records(str(tmp_path / 'p/t-*'))])
  assert sorted(set(classes.tolist())) == [2, 3, 4]


def test_command_line_errors_are_one_line(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  script = os.path.join(ROOT, 'scripts', 'coco_to_tfrecord.py')
  (tmp_path / 'bad.json').write_text('[1, 2')
  result = subprocess.run(
      [sys.executable, script, f'--annotation_file={tmp_path}/bad.json',
       f'--image_dir={tmp_path}', f'--output_prefix={tmp_path}/o/t'],
      capture_output=True, text=True, env=env, check=False)
  errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert result.returncode == 1, result.stderr
  assert len(errors) == 1 and 'bad.json: not valid JSON' in errors[0]
  assert 'Traceback' not in result.stderr


def test_killed_writer_leaves_no_partial_shard(tmp_path):
  """write_tfrecords (every writer of shards) killed mid-way: no file
  under a shard's name, only the temporary one."""
  prefix = tmp_path / 'killed'
  code = textwrap.dedent(f"""
      import itertools, sys
      from spinenet_tf.data import detection_records
      def examples():
        for i in itertools.count():
          if i == 2000:
            print('writing', flush=True)
          yield b'x' * 1000
      detection_records.write_tfrecords({str(prefix)!r}, examples(), 2)
      """)
  process = subprocess.Popen([sys.executable, '-c', code],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
  assert process.stdout.readline().strip() == 'writing'
  time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.wait()
  names = os.listdir(tmp_path)
  assert len(names) == 2 and all('.tmp-' in n for n in names), names
  assert sum(os.path.getsize(tmp_path / n) for n in names) > 1e6
