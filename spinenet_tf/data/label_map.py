"""Label maps: the class ids of a dataset, their names, and the category ids
of the COCO-format JSON they came from.

    label_map = read_label_map('records/train_label_map.json')
    label_map.names          # {1: 'cat', 2: 'dog'}
    label_map.num_classes    # 3: the class slots, background 0 included
    label_map.annotation_id  # {1: 17, 2: 18}: the JSON's category ids

The file `spinenet-coco-to-tfrecord` writes beside its shards:

    {"classes": [{"id": 1, "name": "cat", "annotation_id": 17}, ...]}

A plain mapping {"1": "cat", "2": "dog"} (id -> name) is read too (the
annotation ids are then the ids). Ids are integers >= 1 (0 is background).
"""

import dataclasses
import json

from spinenet_tf import io_utils


@dataclasses.dataclass(frozen=True)
class LabelMap:
  """Class ids -> names, and -> the annotation file's category ids."""
  names: dict
  annotation_id: dict
  path: str = ''

  @property
  def num_classes(self):
    """Class slots of a model that predicts these ids (background is 0)."""
    return max(self.names) + 1

  def name(self, class_id):
    return self.names.get(int(class_id), str(int(class_id)))

  def to_json(self):
    lines = [json.dumps({'id': i, 'name': self.names[i],
                         'annotation_id': self.annotation_id[i]})
             for i in sorted(self.names)]
    return '{"classes": [\n ' + ',\n '.join(lines) + '\n]}\n'


def _entries(data, path):
  """[(id, name, annotation_id)] of either file layout."""
  if isinstance(data, dict) and 'classes' in data:
    classes = data['classes']
    if not isinstance(classes, list):
      raise ValueError(f'label map {path}: "classes" must be a list.')
    entries = []
    for k, item in enumerate(classes):
      if not isinstance(item, dict) or 'id' not in item or 'name' not in item:
        raise ValueError(f'label map {path}: classes[{k}] must be an object '
                         f'with "id" and "name", got {item!r}.')
      entries.append((item['id'], item['name'],
                      item.get('annotation_id', item['id'])))
    return entries
  if isinstance(data, dict):
    return [(key, name, key) for key, name in data.items()]
  raise ValueError(f'label map {path}: expected a JSON object, got '
                   f'{type(data).__name__}.')


def _class_id(value, path, what):
  try:
    class_id = int(value)
  except (TypeError, ValueError):
    class_id = None
  if class_id is None or isinstance(value, bool) or str(class_id) != str(
      value).strip():
    raise ValueError(f'label map {path}: {what} {value!r} is not an integer.')
  return class_id


def label_map_from_entries(entries, path=''):
  """A checked LabelMap from (id, name, annotation_id) triples."""
  names, annotation_id = {}, {}
  for raw_id, name, raw_annotation_id in entries:
    class_id = _class_id(raw_id, path, 'class id')
    if class_id < 1:
      raise ValueError(f'label map {path}: class id {class_id} < 1 (0 is '
                       'background).')
    if class_id in names:
      raise ValueError(f'label map {path}: class id {class_id} is listed '
                       'twice.')
    names[class_id] = str(name)
    annotation_id[class_id] = _class_id(raw_annotation_id, path,
                                        'annotation_id')
  if not names:
    raise ValueError(f'label map {path}: no classes.')
  return LabelMap(names, annotation_id, path)


def read_label_map(path):
  """The LabelMap in `path` (local or gs://); errors name the file."""
  path = str(path)
  text = io_utils.read_text(path, 'label map')
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f'label map {path}: not JSON ({e}).') from None
  return label_map_from_entries(_entries(data, path), path)
