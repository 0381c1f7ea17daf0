"""Files users write (spec files, configs, label maps, COCO annotations,
class-name lists) read the same from UTF-8, UTF-8 with a byte-order mark
(Windows Notepad) and UTF-16 with one; any other encoding is one error
naming the file, the byte and what to do."""
import json

import pytest

from spinenet_tf import specs
from spinenet_tf.commands import predict
from spinenet_tf.data import coco_converter, label_map
from spinenet_tf.export import model_config
from spinenet_tf.training import config as config_lib

SPECS = ('# réseau\nblock_specs:\n- [2, bottleneck, [0, 1], false]\n'
         '- [3, bottleneck, [0, 1], true]\n')
EXPERIMENT = ("# réglages\ntask: detection\nmodel: {backbone: '49S', "
              'input_size: 128, num_classes: 4}\n')
MODEL_CONFIG = ("# modèle\ntask: detection\nmodel: {backbone: '49S', "
                'input_size: 128, num_classes: 3}\n')
LABEL_MAP = json.dumps({'classes': [{'id': 1, 'name': 'café'}]},
                       ensure_ascii=False)
ANNOTATIONS = json.dumps({'images': [], 'annotations': [],
                          'categories': [{'id': 1, 'name': 'café'}]},
                         ensure_ascii=False)
CLASS_NAMES = 'café\nthé\n'

# reader -> (file text, what the reader returns that holds the text).
READERS = {
    'spec file': (SPECS, lambda p: specs.load_specs_yaml(p)[0][1].level),
    'experiment': (EXPERIMENT, lambda p: config_lib.load_experiment(
        p).model['backbone']),
    'model config': (MODEL_CONFIG,
                     lambda p: model_config.load_config(p)['model']),
    'label map': (LABEL_MAP, lambda p: label_map.read_label_map(p).names),
    'annotations': (ANNOTATIONS, lambda p: coco_converter.load_coco_json(
        p)['categories']),
    'class names': (CLASS_NAMES, predict.read_class_names),
}
ENCODINGS = ['utf-8', 'utf-8-sig', 'utf-16']


@pytest.mark.parametrize('reader', sorted(READERS))
def test_byte_order_marks_and_utf16_read_as_utf8(reader, tmp_path):
  text, read = READERS[reader]
  results = []
  for encoding in ENCODINGS:
    path = tmp_path / f'{encoding}.txt'
    path.write_bytes(text.encode(encoding))
    results.append(read(str(path)))
  assert results[0] == results[1] == results[2]


@pytest.mark.parametrize('reader', sorted(READERS))
def test_another_encoding_is_one_error_naming_the_file(reader, tmp_path):
  text, read = READERS[reader]
  path = tmp_path / 'latin1.txt'
  path.write_bytes(text.encode('latin-1'))
  with pytest.raises(ValueError) as error:
    read(str(path))
  message = str(error.value)
  assert str(path) in message
  assert 'not UTF-8 text (byte ' in message and 'save it as UTF-8' in message
