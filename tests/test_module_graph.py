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
