"""The package reads top-down: its subpackages import each other without a
cycle, and `import spinenet_tf` (the backbones) loads nothing heavy of its
own: no COCO evaluation, plotting, image files or search engine."""
import ast
import json
import os
import subprocess
import sys

PACKAGE = os.path.join(os.path.dirname(__file__), '..', 'spinenet_tf')
# Loaded only by the parts that need them (coco_eval, viz, data, search,
# hub).
HEAVY = ('pycocotools', 'matplotlib', 'PIL', 'optuna', 'sklearn',
         'tensorflow_datasets', 'keras_hub')


def _unit(module):
  """spinenet_tf.training.trainer -> spinenet_tf.training (a subpackage or
  a top-level module)."""
  return '.'.join(module.split('.')[:2])


def _imports(path, module):
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      if node.module == 'spinenet_tf':
        yield from (f'spinenet_tf.{a.name}' for a in node.names)
      else:
        yield node.module


def import_graph():
  """{unit: units it imports} over every module of the package."""
  graph = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if not name.endswith('.py'):
        continue
      path = os.path.join(folder, name)
      module = 'spinenet_tf.' + os.path.relpath(path, PACKAGE)[:-3].replace(
          os.sep, '.').removesuffix('.__init__')
      unit = _unit(module)
      graph.setdefault(unit, set()).update(
          _unit(m) for m in _imports(path, module)
          if m.startswith('spinenet_tf.') and _unit(m) != unit)
  return graph


def find_cycle(graph):
  """A list of units [a, b, ..., a] that import in a circle, or None."""
  state = {}

  def visit(unit, path):
    state[unit] = 'open'
    for other in sorted(graph.get(unit, ())):
      if state.get(other) == 'open':
        return path[path.index(other):] + [other]
      if other not in state:
        found = visit(other, path + [other])
        if found:
          return found
    state[unit] = 'done'
    return None

  for unit in sorted(graph):
    if unit not in state:
      found = visit(unit, [unit])
      if found:
        return found
  return None


def test_subpackages_import_without_a_cycle():
  graph = import_graph()
  assert 'spinenet_tf.training' in graph['spinenet_tf.search']
  assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c',
                                                             'a']
  assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_import_spinenet_tf_loads_nothing_heavy():
  # Keras itself loads some of these when installed: only what our import
  # adds on top of keras and tensorflow counts.
  code = ('import json, sys, keras, tensorflow\n'
          'before = set(sys.modules)\n'
          'import spinenet_tf\n'
          'spinenet_tf.build_backbone("49", (128, 128, 3))\n'
          'added = {m.split(".")[0] for m in set(sys.modules) - before}\n'
          'print(json.dumps(sorted(added)))\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, check=True, cwd=os.path.dirname(PACKAGE))
  added = json.loads(result.stdout.strip().splitlines()[-1])
  assert 'spinenet_tf' in added
  assert not set(added) & set(HEAVY), added


def _modules():
  for folder, _, files in os.walk(PACKAGE):
    for name in sorted(files):
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        yield os.path.relpath(path, PACKAGE), ast.parse(open(path).read())


def _is_private(name):
  return name.startswith('_') and not name.startswith('__')


def private_crossings(relpath, tree):
  """Places in one module that use a private name of another module, or
  a Keras / TensorFlow internal outside compat.py."""
  found, modules = [], set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      internal = node.module.startswith(('keras.src', 'tensorflow.python'))
      if internal and relpath != 'compat.py':
        found.append(f'{relpath}:{node.lineno} imports {node.module}')
      if node.module.startswith('spinenet_tf'):
        found += [f'{relpath}:{node.lineno} imports {node.module}.{a.name}'
                  for a in node.names if _is_private(a.name)]
        modules.update(a.asname or a.name for a in node.names)
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith(('keras.src', 'tensorflow.python')):
          found.append(f'{relpath}:{node.lineno} imports {a.name}')
        if a.name.startswith('spinenet_tf') and a.asname:
          modules.add(a.asname)
  for node in ast.walk(tree):
    if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
      continue
    owner = node.value
    if isinstance(owner, ast.Name) and owner.id in modules:
      found.append(f'{relpath}:{node.lineno} uses {owner.id}.{node.attr}')
    elif relpath != 'compat.py' and not (
        isinstance(owner, ast.Name) and owner.id in ('self', 'cls') or
        isinstance(owner, ast.Call) and getattr(owner.func, 'id', '') ==
        'super'):
      found.append(f'{relpath}:{node.lineno} uses {ast.unparse(node)}')
  return found


def test_no_module_uses_another_modules_private_names():
  """Private names stay in their module; Keras and TF internals (and
  private attributes of objects the code does not own) only in compat.py,
  which lists the versions they were checked on."""
  found = [line for relpath, tree in _modules()
           for line in private_crossings(relpath, tree)]
  assert not found, '\n'.join(found)


def test_the_crossing_finder_finds_each_kind():
  code = ('from spinenet_tf.models import backbone as b\n'
          'from spinenet_tf.models.backbone import _resolve\n'
          'from keras.src import ops\n'
          'b._resolve()\n'
          'model._flatten_layers()\n'
          'self._own()\n'
          'super()._hook()\n')
  assert private_crossings('viz/x.py', ast.parse(code)) == [
      'viz/x.py:2 imports spinenet_tf.models.backbone._resolve',
      'viz/x.py:3 imports keras.src',
      'viz/x.py:4 uses b._resolve',
      'viz/x.py:5 uses model._flatten_layers']


def test_model_building_parts_do_not_import_training_or_search():
  """A SavedModel or a backbone needs no trainer: models, layers, export,
  data and detection import neither training nor search."""
  graph = import_graph()
  for unit in ('models', 'layers', 'export', 'data', 'detection'):
    imported = graph.get(f'spinenet_tf.{unit}', set())
    assert not imported & {'spinenet_tf.training', 'spinenet_tf.search'}, (
        unit, sorted(imported))


def test_the_training_sections_are_the_experiment_configs_fields():
  import dataclasses

  from spinenet_tf.models.factory import TRAINING_SECTIONS
  from spinenet_tf.training.config import ExperimentConfig
  fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
  assert fields - {'task', 'model'} == TRAINING_SECTIONS
