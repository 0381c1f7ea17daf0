"""Runs a detector or classifier on image files; writes annotated PNGs and a
COCO results JSON.

  spinenet-predict --saved_model /models/retinanet/1 \
      --input photos/ --output_dir predictions/
  spinenet-predict --config_file retinanet.yaml \
      --checkpoint model.weights.h5 --input photo.jpg --output_dir out/

--saved_model takes an export of spinenet-export (its image_bytes
signature); --config_file and --checkpoint build the model as export.py does
and run the same serving function in process. --input is an image file or a
folder (its .jpg/.jpeg/.png/.gif/.bmp files, sorted). Files that cannot be
decoded are skipped and counted; when none can, that is an error.

A user error (a missing --input, no decodable image, a --saved_model that
is not an export, a bad config or checkpoint) prints one line `error: ...`
on stderr and exits with status 1 (2 for a flag error); --verbose shows the
trace.

Detection writes, in --output_dir:
  <name>.png        the image with its detections (score >= --score_threshold)
  detections.json   COCO results [{image_id, category_id, bbox, score}],
                    every returned detection; with --label_map the
                    category_id is the annotation file's (the label map's
                    annotation_id) and category_name is added
  images.json       COCO images [{id, file_name, height, width}]: the image
                    id is the file name's number (000000397133.jpg ->
                    397133), else its 1-based position in the sorted inputs
Classification writes predictions.json: [{file_name, top_k_classes,
top_k_probabilities}].
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags, logging  # noqa: E402

from spinenet_tf import cli, io_utils  # noqa: E402
from spinenet_tf.detection.coco_eval import (detections_to_coco,  # noqa: E402
                                             write_results_json)
from spinenet_tf.checkpoints import load_checkpoint  # noqa: E402
from spinenet_tf.data import label_map  # noqa: E402
from spinenet_tf.export import model_config  # noqa: E402
from spinenet_tf.models import factory  # noqa: E402
from spinenet_tf.data.image_ops import decode_image  # noqa: E402
from spinenet_tf.export.saved_model import ServingModule  # noqa: E402
from spinenet_tf.viz.boxes import draw_detections  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')

FLAGS = flags.FLAGS
flags.DEFINE_string('saved_model', None, 'SavedModel directory.')
flags.DEFINE_string('config_file', None, 'Model config YAML (with '
                    '--checkpoint, instead of --saved_model).')
flags.DEFINE_string('checkpoint', None, '.weights.h5 file or TF checkpoint.')
flags.DEFINE_string('input', None, 'An image file or a folder of images.')
flags.DEFINE_string('output_dir', None, 'Where the results go.')
flags.DEFINE_float('score_threshold', 0.3, 'Draw detections with at least '
                   'this score.')
flags.DEFINE_string('class_names', None, 'Text file: the name of class id i '
                    'on line i + 1 (line 1 is id 0, background).')
flags.DEFINE_string('label_map', None, 'A label map JSON (spinenet-coco-to-'
                    'tfrecord\'s <prefix>_label_map.json): names classes in '
                    'the pictures and in detections.json.')
flags.DEFINE_integer('batch_size', 8, 'Images per call.')
flags.mark_flags_as_required(['input', 'output_dir'])


# What predict writes in --output_dir besides one <name>.png per input.
RESULT_FILES = ('detections.json', 'images.json', 'predictions.json')


def list_images(path):
  """The image files at `path` (a file, or a folder's images, sorted).
  In a folder, sub-folders (not searched), broken links and files of
  other extensions are left out with a logged count of each."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'--input {path}: no such file or folder.')
  if not tf.io.gfile.isdir(path):
    return [path]
  files, left_out = [], {}
  for name in sorted(tf.io.gfile.listdir(path)):
    entry = os.path.join(path, name.rstrip('/'))
    kind = ('sub-folders (not searched)' if tf.io.gfile.isdir(entry) else
            'broken links' if not tf.io.gfile.exists(entry) else
            None if name.lower().endswith(IMAGE_EXTENSIONS) else
            'files of other extensions')
    if kind is None:
      files.append(entry)
    else:
      left_out[kind] = left_out.get(kind, 0) + 1
  if left_out:
    logging.warning('--input %s: left out %s.', path, ', '.join(
        f'{count} {kind}' for kind, count in sorted(left_out.items())))
  if not files:
    raise cli.UserError(f'--input {path}: the folder has no '
                        f'{"/".join(IMAGE_EXTENSIONS)} files.')
  return files


def _real(path):
  return path if '://' in path else os.path.realpath(path)


def check_inputs_kept(files, output_dir):
  """Refuses an --output_dir where a result would replace an input."""
  outputs = {_real(os.path.join(output_dir, name))
             for name in output_names(files) + list(RESULT_FILES)}
  replaced = [f for f in files if _real(f) in outputs]
  if replaced:
    more = f' and {len(replaced) - 1} more' if len(replaced) > 1 else ''
    raise cli.UserError(f'--output_dir {output_dir}: the results would '
                        f'replace the input {replaced[0]}{more}; write them '
                        'to another folder.')


def image_ids(files):
  """COCO image id per file: its numeric stem, else its 1-based position."""
  stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
  if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(
      stems):
    return [int(s) for s in stems]
  return list(range(1, len(files) + 1))


def output_names(files):
  """<name>.png per file; two inputs may not share an output name."""
  names = [os.path.splitext(os.path.basename(f))[0] + '.png' for f in files]
  if len(set(names)) != len(names):
    raise ValueError('inputs with the same name but different extensions '
                     'would overwrite each other\'s PNG.')
  return names


def load_predictor():
  """(function: encoded image strings [N] -> dict of numpy outputs, whether
  the model is a detector)."""
  if FLAGS.saved_model:
    if not tf.io.gfile.exists(os.path.join(FLAGS.saved_model,
                                           'saved_model.pb')):
      raise cli.UserError(f'--saved_model {FLAGS.saved_model}: not a '
                          'SavedModel folder (no saved_model.pb); give an '
                          'export_dir written by spinenet-export.')
    signatures = tf.saved_model.load(FLAGS.saved_model).signatures
    if 'image_bytes' not in signatures:
      raise cli.UserError(f'--saved_model {FLAGS.saved_model}: has no '
                          'image_bytes signature (found '
                          f'{sorted(signatures)}); export it with '
                          'spinenet-export.')
    function = signatures['image_bytes']
    run = lambda encoded: function(image_bytes=encoded)  # noqa: E731
    is_detector = 'boxes' in function.structured_outputs
  else:
    model = factory.build_model_from_config(
        model_config.load_config(FLAGS.config_file))
    load_checkpoint(model, FLAGS.checkpoint)
    module = ServingModule(model)
    run, is_detector = module.serve_image_bytes, module.is_detector
  predict = lambda encoded: {k: v.numpy() for k, v in run(  # noqa: E731
      tf.constant(encoded, tf.string)).items()}
  return predict, is_detector


def read_bytes(path):
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()


def decode_error(error):
  """The decoder's own line of a TensorFlow op error (a loaded function's
  message holds it after the node's trace header)."""
  lines = [line.strip() for line in (error.message or '').splitlines()]
  lines = [line for line in lines if line and not line.startswith(
      ('[[', 'Graph execution error', 'Detected at node', '<stack trace'))]
  return lines[-1] if lines else cli.one_line(error)


def predict_all(predict, files):
  """([(file index, outputs of that image)], {file: why skipped}),
  skipping undecodable files."""
  results, skipped = [], {}
  for start in range(0, len(files), FLAGS.batch_size):
    batch = list(range(start, min(start + FLAGS.batch_size, len(files))))
    encoded = []
    for i in batch:
      encoded.append(read_bytes(files[i]))
    try:
      outputs = predict(encoded)
      results += [(i, {k: v[j] for k, v in outputs.items()})
                  for j, i in enumerate(batch)]
    except tf.errors.InvalidArgumentError:
      for j, i in enumerate(batch):  # find the bad ones
        try:
          outputs = predict(encoded[j:j + 1])
          results.append((i, {k: v[0] for k, v in outputs.items()}))
        except tf.errors.InvalidArgumentError as e:
          skipped[files[i]] = decode_error(e)
          logging.warning('skipped %s: %s', files[i], skipped[files[i]])
  return results, skipped


def read_class_names(path):
  if path is None:
    return None
  return [line.strip() for line in
          io_utils.read_text(path, '--class_names').splitlines()]


def read_names(class_names_path, label_map_path):
  """(names {id: name} or a list by id, {class id: category id} or None)."""
  if class_names_path and label_map_path:
    raise cli.UserError('give --class_names or --label_map, not both.')
  if label_map_path:
    names = label_map.read_label_map(label_map_path)
    return names.names, names.annotation_id
  return read_class_names(class_names_path), None


def write_detections(files, results, class_names, category_ids=None):
  ids, names = image_ids(files), output_names(files)
  coco_results, coco_images = [], []
  for i, outputs in results:
    image = decode_image(read_bytes(files[i])).numpy()
    draw_detections(image, outputs['boxes'], outputs['classes'],
                    outputs['scores'], class_names, FLAGS.score_threshold,
                    path=os.path.join(FLAGS.output_dir, names[i]))
    coco_images.append({'id': ids[i], 'file_name': os.path.basename(files[i]),
                        'height': image.shape[0], 'width': image.shape[1]})
    batch = {'source_id': [ids[i]],
             **{k: np.asarray(v)[None] for k, v in outputs.items()}}
    coco_results += detections_to_coco(
        batch, category_ids,
        class_names if category_ids is not None else None)
  write_results_json(coco_results, os.path.join(FLAGS.output_dir,
                                                'detections.json'))
  write_results_json(coco_images, os.path.join(FLAGS.output_dir,
                                               'images.json'))
  logging.info('%d detections on %d images in %s', len(coco_results),
               len(results), FLAGS.output_dir)


def write_classifications(files, results):
  predictions = [{'file_name': os.path.basename(files[i]),
                  'top_k_classes': outputs['top_k_classes'].tolist(),
                  'top_k_probabilities':
                      outputs['top_k_probabilities'].tolist()}
                 for i, outputs in results]
  write_results_json(predictions, os.path.join(FLAGS.output_dir,
                                               'predictions.json'))


def main(argv):
  cli.refuse_arguments(argv)
  if bool(FLAGS.saved_model) == bool(FLAGS.config_file and FLAGS.checkpoint):
    raise cli.UserError('give either --saved_model or --config_file and '
                        '--checkpoint.')
  if FLAGS.batch_size < 1:
    raise cli.UserError(f'--batch_size must be >= 1, got {FLAGS.batch_size}.')
  files = list_images(FLAGS.input)
  check_inputs_kept(files, FLAGS.output_dir)
  class_names, category_ids = read_names(FLAGS.class_names, FLAGS.label_map)
  predict, is_detector = load_predictor()
  results, skipped = predict_all(predict, files)
  if not results:
    example, why = next(iter(skipped.items()))
    raise cli.UserError(f'--input {FLAGS.input}: none of the {len(files)} '
                        f'files could be decoded as an image (e.g. {example}: '
                        f'{why}).')
  if skipped:
    logging.warning('%d of %d files could not be decoded and were skipped.',
                    len(skipped), len(files))
  tf.io.gfile.makedirs(FLAGS.output_dir)
  if is_detector:
    write_detections(files, results, class_names, category_ids)
  else:
    write_classifications(files, results)


def run():
  """The console entry point (spinenet-predict)."""
  cli.run(main, doc=__doc__)


if __name__ == '__main__':
  run()
