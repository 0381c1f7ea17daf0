"""Bad input to builders, layers, block-spec files and configs: each case
asserts the error type and the message a user sees (it names the argument,
field or file)."""

import re

import pytest

import spinenet_tf
from spinenet_tf import configs, layers
from spinenet_tf.training import config as config_lib

SMALL = (128, 128, 3)
DEMO = configs.path('demo_retinanet_synthetic')


@pytest.mark.parametrize('build', [
    lambda: spinenet_tf.build_backbone('mobile-49XS', SMALL,
                                       totally_bogus_option=1),
    lambda: spinenet_tf.spinenet_mobile_49xs(SMALL, totally_bogus_option=1),
    lambda: spinenet_tf.build_classifier(3, 'mobile-49XS', SMALL,
                                         totally_bogus_option=1),
    lambda: spinenet_tf.build_retinanet('mobile-49XS', 3, SMALL,
                                        totally_bogus_option=1),
    lambda: spinenet_tf.build_retinanet(
        'mobile-49XS', 3, SMALL,
        backbone_kwargs={'totally_bogus_option': 1}),
    lambda: spinenet_tf.SpineNet(spinenet_tf.specs.SPINENET_BLOCK_SPECS,
                                 spinenet_tf.SCALING['49S'], SMALL,
                                 totally_bogus_option=1),
], ids=['build_backbone', 'constructor', 'classifier', 'retinanet',
        'retinanet_backbone_kwargs', 'SpineNet'])
def test_builders_refuse_unknown_keywords(build):
  with pytest.raises(TypeError, match="'totally_bogus_option'"):
    build()


@pytest.mark.parametrize('make', [
    lambda: layers.ConvNormAct(8, totally_bogus_option=1),
    lambda: layers.ResidualBlock(8, totally_bogus_option=1),
    lambda: layers.BottleneckBlock(8, totally_bogus_option=1),
    lambda: layers.MBConvBlock(8, 8, totally_bogus_option=1),
    lambda: layers.SqueezeExcite(2, totally_bogus_option=1),
    lambda: layers.Resample(1, 8, 0.5, 8, totally_bogus_option=1),
    lambda: layers.MobileResample(1, 8, totally_bogus_option=1),
    lambda: layers.BlockFusion(totally_bogus_option=1),
    lambda: layers.StochasticDepth(0.1, totally_bogus_option=1),
    lambda: layers.RetinaNetHead(totally_bogus_option=1),
    lambda: layers.SpinalDense(3, totally_bogus_option=1),
], ids=lambda _: '')
def test_layers_refuse_unknown_keywords_with_their_options(make):
  with pytest.raises(TypeError) as error:
    make()
  message = str(error.value)
  assert "unknown keyword argument(s) ['totally_bogus_option']" in message
  assert "'name'" in message  # the message lists what the layer takes


@pytest.mark.parametrize('kwargs, field', [
    (dict(filter_size_scale=0.0), 'scaling.filter_size_scale'),
    (dict(resample_alpha=-0.5), 'scaling.resample_alpha'),  # (0, inf]
    (dict(block_repeats=1.5), 'scaling.block_repeats'),
    (dict(endpoints_num_filters='64'), 'scaling.endpoints_num_filters'),
    (dict(filter_size_scale=0.01), 'leaves level 0 blocks with 0 filters'),
    (dict(resample_alpha=0.25), 'scaling.resample_alpha = 0.25 has no effect '
                                'on spinenet_mobile: only spinenet uses it'),
    (dict(activation='gelu'), 'activation must be one of'),
    (dict(stochastic_depth_rate='0.1'), 'stochastic_depth_rate must be a number'),
    (dict(norm_momentum=1.5), 'norm_momentum must be a number in [0, 1)'),
    (dict(use_sync_bn='yes'), 'use_sync_bn must be true or false'),
    (dict(min_level='3'), 'min_level must be an integer'),
], ids=lambda v: v if isinstance(v, str) else '')
def test_backbone_argument_types_and_ranges(kwargs, field):
  with pytest.raises(ValueError, match=re.escape(field)):
    spinenet_tf.build_backbone('mobile-49XS', SMALL, **kwargs)


@pytest.mark.parametrize('input_shape', [(128, 128), 'image', (128.0, 128, 3)])
def test_backbone_input_shape(input_shape):
  with pytest.raises(ValueError, match='input_shape must be'):
    spinenet_tf.build_backbone('mobile-49XS', input_shape)


@pytest.mark.parametrize('num_classes', [0, 1, '3', True, 2.5])
def test_retinanet_num_classes(num_classes):
  with pytest.raises(ValueError, match=r'num_classes must be an integer >= 2'):
    spinenet_tf.build_retinanet('mobile-49XS', num_classes, SMALL)


@pytest.mark.parametrize('option, message', [
    (dict(iou_threshold=0.0), 'iou_threshold must be a number in (0, 1]'),
    (dict(negative_threshold=0.7), 'negative_threshold must be a number in '
                                   '[0, 0.5]'),
    (dict(aspect_ratios=[]), 'aspect_ratios must be a non-empty list'),
    (dict(max_detections=0), 'max_detections must be an integer >= 1'),
    (dict(box_coder_weights=[1, 1]), 'box_coder_weights must be None or 4'),
    (dict(class_agnostic_nms=1), 'class_agnostic_nms must be true or false'),
], ids=lambda v: v if isinstance(v, str) else '')
def test_retinanet_option_ranges(option, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    spinenet_tf.build_retinanet('mobile-49XS', 3, SMALL, **option)


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_classes=0), 'num_classes must be an integer >= 1'),
    (dict(num_classes=True), 'num_classes must be an integer >= 1'),
    (dict(num_classes=3, head='mlp'), "head must be one of ['dense', 'spinal']"),
    (dict(num_classes=3, dropout_rate=1.0), 'dropout_rate must be a number'),
])
def test_classifier_arguments(kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    spinenet_tf.build_classifier(backbone='mobile-49XS', input_shape=SMALL,
                                 **kwargs)


def test_classifier_default_input_shape_builds():
  model = spinenet_tf.build_classifier(3, 'mobile-49XS')
  assert tuple(model.inputs[0].shape[1:]) == (256, 256, 3)


def _spec_file(tmp_path, text):
  path = tmp_path / 'my_spec.yaml'
  path.write_text(text)
  return str(path)


MOBILE_ROWS = [
    '[2, mbconv, [0, 1], false]', '[4, mbconv, [0, 1], false]',
    '[3, mbconv, [2, 3], true]', '[4, mbconv, [2, 4], true]',
    '[5, mbconv, [3, 5], true]', '[6, mbconv, [4, 6], true]',
    '[7, mbconv, [5, 7], true]']


def _rows(rows):
  return 'block_specs:\n' + ''.join(f'  - {r}\n' for r in rows)


@pytest.mark.parametrize('text, message', [
    # A typo among Mobile blocks is reported as the typo, not as the
    # valid blocks being "unknown for spinenet".
    (_rows(MOBILE_ROWS[:3] + ['[4, mbconvv, [2, 4], true]'] + MOBILE_ROWS[4:]),
     "block 3: unknown block_fn 'mbconvv'; block types are"),
    (_rows(['[2, botleneck, [0, 1], false]']),
     "block 0: unknown block_fn 'botleneck'"),
    (_rows(MOBILE_ROWS[:2] + ['[3, bottleneck, [2, 3], true]']),
     "block 2 is 'bottleneck' but block 0 is 'mbconv'"),
    (_rows(["['3', mbconv, [0, 1], false]"]),
     "block 0: field level must be an integer, got '3'"),
    (_rows(['[3, mbconv, [0, 9], false]']),
     'block 0: input_offsets[1] = 9 points forward'),
    (_rows(['[3, mbconv, [0], false]']),
     'block 0: a chain block (one input offset) is SpineNet-only'),
    ('block_specs: mbconv\n', "block specs must be a list of blocks, got 'mbconv'"),
    ('scaling: {filter_size_scale: big}\n' + _rows(MOBILE_ROWS),
     "scaling.filter_size_scale must be a number in (0, inf], got 'big'"),
    ('scaling: {endpoints_num_filters: -8}\n' + _rows(MOBILE_ROWS),
     'scaling.endpoints_num_filters must be an integer >= 1, got -8'),
    ('scaling: [1, 2]\n' + _rows(MOBILE_ROWS), 'scaling must be a mapping'),
    ('scaling: {width: 2}\n' + _rows(MOBILE_ROWS),
     "unknown scaling field(s) ['width']"),
    ('block_specs: [\n', 'is not valid YAML'),
    ('blocks: []\n', 'expected a top-level `block_specs:` list'),
], ids=lambda v: '' if '\n' in v else v[:40])
def test_block_spec_files(tmp_path, text, message):
  path = _spec_file(tmp_path, text)
  with pytest.raises(ValueError) as error:
    spinenet_tf.build_backbone(path, SMALL)
  assert message in str(error.value)
  assert path in str(error.value)  # names the file


def test_missing_spec_file():
  with pytest.raises(FileNotFoundError, match='no/such.yaml: no such file'):
    spinenet_tf.build_backbone('no/such.yaml', SMALL)


def _load(*overrides):
  return config_lib.load_experiment(DEMO, list(overrides))


@pytest.mark.parametrize('override, message', [
    ('trainer.steps_per_loop=0',
     "'trainer.steps_per_loop' must be a number in [1, inf], got 0"),
    ('trainer.train_steps=-5', "'trainer.train_steps' must be a number"),
    ('train_data.global_batch_size=0', "'train_data.global_batch_size'"),
    ('optimizer.weight_decay=-0.1', "'optimizer.weight_decay'"),
    ('optimizer.ema_momentum=1.0,optimizer.use_ema=true',
     "'optimizer.ema_momentum' must be a number in [0, 1)"),
    ('model.kernel_regularizer=l2',
     'model.kernel_regularizer is not taken: use optimizer.l2_weight_decay'),
    ('model.backbone_kwargs={kernel_regularizer: l2}',
     'model.backbone_kwargs.kernel_regularizer is not taken'),
    ('model.backbone_kwargs={filter_scale: 0.5}',
     'unknown config key model.backbone_kwargs.filter_scale'),
    ('model.backbone=resnet50,model.backbone_kwargs={resample_alpha: 0.5}',
     'unknown config key model.backbone_kwargs.resample_alpha'),
    ('model.decoder_kwargs={num_layers: 2}',
     'unknown config key model.decoder_kwargs.num_layers'),
    ('model.decoder=bifpn', 'config key model.decoder must be null or one of'),
    ('optimizer.type=adam,optimizer.momentum=0.5',
     'optimizer.momentum = 0.5 has no effect here: it applies only with '
     'optimizer.type sgd'),
    ('optimizer.ema_momentum=0.99',
     'applies only with optimizer.use_ema true'),
    # Before: 0.9999 over 2,000 steps evaluated and kept mostly step 1.
    ('optimizer.use_ema=true,trainer.train_steps=2000',
     'config key optimizer.ema_momentum 0.9999 over trainer.train_steps 2000 '
     "keeps 82% of the first step's weights in the average that is "
     'evaluated and exported; use ema_momentum <= 0.998503 (at most 5% '
     'left) or more steps.'),
    ('schedule.type=constant,schedule.decay_steps=10',
     'applies only with schedule.type cosine'),
    ('schedule.boundaries=[5],schedule.multipliers=[0.1]',
     'applies only with schedule.type step'),
    ('schedule.warmup_steps=0', 'schedule.warmup_learning_rate = 0.0003 has '
                                'no effect here: it applies only with '
                                'schedule.warmup_steps > 0'),
    ('trainer.best_metric=null,trainer.best_metric_mode=min',
     'applies only with trainer.best_metric'),
    # Before: refused only at the first evaluation, on the chief alone.
    ('trainer.best_metric=mAP', "config key trainer.best_metric 'mAP' is not "
     "a detection metric: one of ['AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', "
     "'ARmax1', 'ARmax10', 'ARmax100', 'ARs', 'ARm', 'ARl'] or 'AP/<class "
     "name>' (with eval_data.annotation_file)."),
    ('trainer.best_metric=AP/circle', "trainer.best_metric 'AP/circle' is not "
     'a detection metric'),
    ('train_data.randaugment=[2,10]', 'applies only with task classification'),
    ('eval_data.scale_range=[0.8,1.2]', 'applies only with training data'),
    ("train_data.file_pattern='/data/*.tfrecord'",
     "applies only with source 'tfrecord'"),
    ('train_data.source=coco', "train_data.source must be one of ['tfrecord', "
                               "'tfds', 'synthetic', 'synthetic_scenes'] for "
                               "task 'detection'"),
    ('train_data.scale_range=[2.0,0.5]', 'must be [min, max] with min <= max'),
    ('schedule.type=step,schedule.boundaries=[5],schedule.multipliers=[]',
     'need the same length'),
    ('trainer.trian_steps=5', "unknown config key 'trainer.trian_steps'"),
    ('trainer.train_steps=ten', "'trainer.train_steps' must be int"),
    ('model.num_classes=three', 'model.num_classes has the wrong type'),
], ids=lambda v: v)
def test_config_values(override, message):
  with pytest.raises(ValueError) as error:
    _load(override)
  assert message in str(error.value)
  assert DEMO in str(error.value)  # names the file


def test_adamw_weight_decay_zero_is_zero():
  from spinenet_tf.training.optimization import build_optimizer
  config = _load('optimizer.type=adamw,optimizer.weight_decay=0')
  assert build_optimizer(config.optimizer, 0.1).weight_decay == 0.0
  config = _load('optimizer.type=adamw')
  assert build_optimizer(config.optimizer, 0.1).weight_decay == 0.004
