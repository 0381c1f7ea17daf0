"""Experiment configs: YAML files in spinenet_tf/configs/ load; overrides; strict errors
name the dotted key."""
import os

import pytest

from spinenet_tf import configs
from spinenet_tf.training import config as config_lib

CONFIGS = [configs.path(name) for name in configs.names()]


CUSTOM = ('retinanet_spinenet49_custom', 'retinanet_mobile_spinenet49_custom')


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_shipped_configs_load(path, tmp_path):
  name = os.path.basename(path)[:-len('.yaml')]
  if name not in CUSTOM:
    assert config_lib.load_experiment(path).trainer.train_steps > 0
    return
  # Own-data configs: only the label map and the records are to be set.
  with pytest.raises(ValueError, match=r'model.num_classes is required \(or '
                     'set label_map'):
    config_lib.load_experiment(path)
  names = tmp_path / 'train_label_map.json'
  names.write_text('{"1": "cat", "2": "dog", "5": "bird"}')
  with pytest.raises(ValueError, match="train_data.file_pattern is required "
                     "with train_data.source 'tfrecord'"):
    config_lib.load_experiment(path, [f'label_map={names}'])
  config = config_lib.load_experiment(path, [
      f'label_map={names},train_data.file_pattern=r/train-*,'
      'eval_data.file_pattern=r/val-*'])
  assert config.model['num_classes'] == 6
  with pytest.raises(ValueError, match='model.num_classes = 4 disagrees with '
                     'label_map .*largest class id is 5'):
    config_lib.load_experiment(path, [
        f'label_map={names},train_data.file_pattern=r/train-*,'
        'eval_data.file_pattern=r/val-*,model.num_classes=4'])


def test_overrides_dotted_yaml_and_mapping():
  path = configs.path('demo_retinanet_synthetic')
  config = config_lib.load_experiment(path, [
      'trainer.train_steps=7,train_data.scale_range=[0.5, 1.5]',
      '{optimizer: {global_clipnorm: 1}, model: {num_filters: 16}}'])
  assert config.trainer.train_steps == 7
  assert config.train_data.scale_range == [0.5, 1.5]
  assert config.optimizer.global_clipnorm == 1.0
  assert isinstance(config.optimizer.global_clipnorm, float)
  assert config.model['num_filters'] == 16


MODEL = {'backbone': 'mobile-49XS', 'input_size': 128, 'num_classes': 4}


@pytest.mark.parametrize('data, key', [
    ({'trainer': {'train_stepz': 3}}, 'trainer.train_stepz'),
    ({'trainer': {'train_steps': 'many'}}, 'trainer.train_steps'),
    ({'trainer': {'train_steps': 2.5}}, 'trainer.train_steps'),
    ({'trainer': {'jit_compile': 1}}, 'trainer.jit_compile'),
    ({'trainer': {'mixed_precision': 'float8'}}, 'trainer.mixed_precision'),
    ({'train_data': {'scale_range': [0.5, 'x']}}, 'train_data.scale_range'),
    ({'optimizer': 3}, 'optimizer'),
    ({'bogus': 1}, 'bogus'),
    ({'task': 'segmentation'}, 'task'),
    ({'model': {**MODEL, 'num_filterz': 3}}, 'model.num_filterz'),
    ({'model': {**MODEL, 'num_filters': 'wide'}}, 'model.num_filters'),
    ({'model': {'backbone': '49', 'input_size': 128}}, 'model.num_classes'),
])
def test_bad_values_name_the_key(data, key):
  data = {'model': MODEL, **data}
  with pytest.raises(ValueError, match=key.replace('.', r'\.')):
    config_lib.config_from_dict(data)


def test_classification_model_keys():
  config = config_lib.config_from_dict({
      'task': 'classification',
      'model': {**MODEL, 'dropout_rate': 0.2, 'stochastic_depth_rate': 0.1,
                'activation': 'swish'},
      'train_data': {'source': 'i_naturalist2017'},
      'eval_data': {'source': 'i_naturalist2017'}})
  assert config.model['dropout_rate'] == 0.2
  with pytest.raises(ValueError, match=r'model\.num_convs'):
    config_lib.config_from_dict({'task': 'classification',
                                 'model': {**MODEL, 'num_convs': 2}})


def test_bad_override_and_file_name_in_error(tmp_path):
  path = tmp_path / 'x.yaml'
  path.write_text('model: {backbone: "49", input_size: 128, num_classes: 4}\n'
                  'trainer: {steps_per_loop: -}\n')
  with pytest.raises(ValueError, match='x.yaml.*trainer.steps_per_loop'):
    config_lib.load_experiment(str(path))
  with pytest.raises(ValueError, match='key=value'):
    config_lib.apply_overrides({}, ['trainer.train_steps'])


def test_shipped_experiments_are_package_data():
  assert 'demo_retinanet_synthetic' in configs.names()
  assert configs.path('search_proxy').endswith(
      os.path.join('spinenet_tf', 'configs', 'search_proxy.yaml'))
  with pytest.raises(ValueError, match="unknown experiment 'demo'; shipped "
                     'experiments: classification_spinenet49_imagenet, '):
    configs.path('demo')


@pytest.mark.parametrize('name', [n for n in configs.names()
                                  if n.startswith('retinanet_') and 'coco' in n])
def test_coco_configs_match_model_gardens_anchor_matcher(name):
  # README calls these Model Garden's recipe; before, the negative
  # threshold was our default 0.4 where Model Garden's parser has 0.5.
  from official.core import exp_factory
  parser = exp_factory.get_exp_config(
      'retinanet_spinenet_coco').task.train_data.parser
  model = config_lib.load_experiment(configs.path(name)).model
  assert (model['positive_threshold'], model['negative_threshold']) == (
      parser.match_threshold, parser.unmatched_threshold)
