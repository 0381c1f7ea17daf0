"""README's code runs as written, in document order, in one folder.

Python blocks run in one namespace. Of the bash blocks, the commands of the
user guide's local path run, as the installed commands they name (the
console scripts next to this Python; `scripts/test.sh` installs the
checkout): convert a Model Garden checkpoint, fine-tune on TFRecords,
export, predict, draw. The fine-tuning run gets a test-only
`--params_override` that makes it 2 steps at 256 pixels, to keep CI short.
Every other command (the demo and COCO runs, Cloud TPU, multi-worker, the
benchmarks' `python scripts/...`) must name a command or script that
exists, flags it defines and an experiment in spinenet_tf/configs/.
YAML blocks whose first line is `# NAME.yaml` are written to NAME.yaml;
`my_spinenet.yaml` is abbreviated in the README, so the test writes the full
spec, and `my_pictures/` is a folder of the user's photos, so it makes two.
"""
import os
import re
import shlex
import subprocess
import sys

import numpy as np
from PIL import Image

from spinenet_tf import configs, specs
from benchmarks.model_garden import (build_reference,
                                                 save_reference_checkpoint)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
RUN = ('spinenet-convert-checkpoint', 'spinenet-export', 'spinenet-predict',
       'spinenet-draw')
FINE_TUNE_OVERRIDE = ('--params_override=model.input_size=256,'
                      'train_data.global_batch_size=2,'
                      'eval_data.global_batch_size=2,trainer.train_steps=2,'
                      'trainer.checkpoint_interval=2')


# Its commands run in tests/test_own_data_walkthrough.py (checked here).
OWN_DATA_SECTION = 'Train on your own data'


def readme_blocks(section=None):
  """(language, code) of README's blocks, in order, with `section` those
  of that '## ' section only; else those of every other section."""
  text = open(os.path.join(ROOT, 'README.md')).read()
  blocks = []
  for part in re.split(r'^## ', text, flags=re.M):
    title = part.split('\n', 1)[0].strip()
    if (title == section) if section else (title != OWN_DATA_SECTION):
      blocks += re.findall(r'```(\w+)\n(.*?)```', part, flags=re.S)
  return blocks


def readme_commands(block):
  """The commands of a bash block (`spinenet-...` or `python scripts/...`)
  as (name, program, arguments): program is what runs it here."""
  text = block.replace('\\\n', ' ')
  commands = []
  for line in text.splitlines():
    words = shlex.split(line)
    if line.startswith('spinenet-'):
      commands.append((words[0], [os.path.join(BIN, words[0])], words[1:]))
    elif line.startswith('python scripts/'):
      commands.append((words[1], [sys.executable, os.path.join(ROOT, words[1])],
                       words[2:]))
  return commands


def _write_spec_file(path):
  rows = ''.join(f'  - [{s.level}, {s.block_fn}, [{s.input_offsets[0]}, '
                 f'{s.input_offsets[1]}], {str(s.is_output).lower()}]\n'
                 for s in specs.SPINENET_BLOCK_SPECS)
  with open(path, 'w') as f:
    f.write('scaling: {endpoints_num_filters: 128, filter_size_scale: 0.5}\n'
            'block_specs:\n' + rows)


def _user_files(tmp_path):
  _write_spec_file('my_spinenet.yaml')
  save_reference_checkpoint(build_reference('49', 640),
                            tmp_path / 'path' / 'to' / 'model_garden_ckpt')
  os.makedirs('my_pictures')
  for i, size in enumerate([(300, 400), (256, 256)]):
    pixels = np.random.default_rng(i).integers(0, 255, (*size, 3), np.uint8)
    Image.fromarray(pixels).save(f'my_pictures/photo{i}.jpg')


def _flags(program):
  """Flag names in the program's absl --helpfull (which exits 1)."""
  result = subprocess.run([*program, '--helpfull'], capture_output=True,
                          text=True, timeout=120)
  return set(re.findall(r'--(?:\[no\])?(\w+)',
                        result.stdout + result.stderr))


def _check_command(command, flags_by_name):
  name, program, arguments = command
  assert os.path.exists(program[-1]), name
  if name not in flags_by_name:
    flags_by_name[name] = _flags(program)
  for arg in (a for a in arguments if a.startswith('--')):
    flag, _, value = arg[2:].partition('=')
    assert flag in flags_by_name[name], (name, arg)
    if flag == 'experiment':
      assert value in configs.names(), value


def _run(command):
  name, program, arguments = command
  extra = [FINE_TUNE_OVERRIDE] if name == 'spinenet-train' else []
  result = subprocess.run(
      [*program, *arguments, *extra], capture_output=True, text=True,
      timeout=900, env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 0, (name, arguments, result.stderr[-3000:])


def _runs(command):
  name, _, arguments = command
  return name in RUN or (name == 'spinenet-train' and
                         '--config_file=my_detector.yaml' in arguments)


def test_readme_code_runs_in_order(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _user_files(tmp_path)
  namespace, flags_by_name, ran = {}, {}, []
  for _, block in readme_blocks(OWN_DATA_SECTION):
    for command in readme_commands(block):
      _check_command(command, flags_by_name)
  for language, block in readme_blocks():
    if language == 'python':
      exec(compile(block, 'README.md', 'exec'), namespace)  # noqa: S102
    elif language == 'yaml':
      name = re.match(r'# (\S+\.yaml)\n', block)
      if name and name.group(1) != 'my_spinenet.yaml':
        with open(name.group(1), 'w') as f:
          f.write(block)
    elif language == 'bash':
      for command in readme_commands(block):
        _check_command(command, flags_by_name)
        if _runs(command):
          _run(command)
          ran.append(command[0])
  assert sorted(set(ran)) == sorted(
      {'spinenet-train', *RUN}), ran  # the guide's local path all ran
  assert tuple(namespace['features']['7'].shape) == (2, 5, 5, 256)
  assert tuple(namespace['logits'].shape) == (1, 5089)
  assert tuple(namespace['boxes'].shape) == (1, 100, 4)
  assert tuple(namespace['probabilities'].shape) == (2, 10)
  assert os.path.exists('predictions/photo0.png')


def test_every_extra_named_to_users_is_declared_under_its_normalised_name():
  # pip 23.2.1 matches an extra as written, and the wheel declares the
  # normalised name (lower case, '-'): a [keras_hub] in README installed
  # nothing. Every `spinenet_tf[...]` / `[name]` extra in README, help
  # texts and errors must be one setup.cfg declares, spelt normalised.
  import configparser
  parser = configparser.ConfigParser()
  parser.read(os.path.join(ROOT, 'setup.cfg'))
  declared = set(parser['options.extras_require'])
  assert all(re.fullmatch(r'[a-z0-9]+(-[a-z0-9]+)*', e) for e in declared)
  with open(os.path.join(ROOT, 'README.md')) as f:
    texts = {'README.md': f.read()}
  for folder, _, names in os.walk(os.path.join(ROOT, 'spinenet_tf')):
    for name in names:
      if name.endswith('.py'):
        with open(os.path.join(folder, name)) as f:
          texts[name] = f.read()
  named = {(where, extra) for where, text in texts.items()
           for extra in re.findall(r'spinenet_tf\[([^\]]+)\]', text)}
  extras_line = re.search(r'Extras: (.*?)\.\n', texts['README.md'], re.S)
  named |= {('README.md', e) for e in re.findall(r'`\[([^\]]+)\]`',
                                                   extras_line.group(1))}
  assert {e for _, e in named} >= {'keras-hub', 'postgres', 'digits', 'jax'}
  assert [(w, e) for w, e in named if e not in declared] == []
