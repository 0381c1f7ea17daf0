"""Where shapes may vary, a detection step cuts the ground truth's padding
before the anchor assignment: the same targets, less work; under XLA (and
on TPUs) it keeps the static shapes."""

import numpy as np
import pytest
import tensorflow as tf

from spinenet_tf.detection import anchors as anchors_lib
from spinenet_tf.detection import assigner
from spinenet_tf.training import strategy as strategy_lib
from spinenet_tf.training.tasks import trim_instance_padding
from spinenet_tf.training.trainer import Trainer
from tests.test_config_keys_effect import FakeDetection, _run_config

ANCHORS = anchors_lib.flatten_anchors(anchors_lib.generate_anchors((128, 128)))


def _padded_batch(seed, real_counts, slots=20):
  """Boxes and classes of len(real_counts) images, each with that many
  real boxes among its first slots (an invalid one in between), -1 after."""
  rng = np.random.default_rng(seed)
  boxes = np.zeros((len(real_counts), slots, 4), np.float32)
  classes = np.full((len(real_counts), slots), -1, np.int32)
  for i, count in enumerate(real_counts):
    corners = rng.uniform(0, 100, (count, 2))
    boxes[i, :count] = np.concatenate(
        [corners, corners + rng.uniform(4, 60, (count, 2))], -1)
    classes[i, :count] = rng.integers(1, 5, count)
    if count > 2:
      classes[i, 1] = -1  # padding need not come last
  return boxes, classes


@pytest.mark.parametrize('real_counts, kept', [
    ((3, 7, 0), 7), ((0, 0), 1), ((20, 1), 20), ((1,), 1)])
def test_cut_ground_truth_gives_the_same_targets(real_counts, kept):
  boxes, classes = _padded_batch(len(real_counts), real_counts)
  # Every per-instance label is cut together; the others stay whole.
  masks = np.arange(boxes.shape[0] * boxes.shape[1] * 4, dtype=np.float32
                    ).reshape((*boxes.shape[:2], 2, 2))
  info = tf.ones([len(real_counts), 4])
  cut = trim_instance_padding(
      {'boxes': tf.constant(boxes), 'classes': tf.constant(classes),
       'masks': tf.constant(masks), 'image_info': info},
      ('boxes', 'classes', 'masks'))
  cut_boxes, cut_classes = cut['boxes'], cut['classes']
  assert cut_boxes.shape[1] == cut_classes.shape[1] == kept
  np.testing.assert_array_equal(cut['masks'], masks[:, :kept])
  assert cut['image_info'] is info
  full = assigner.assign_targets(ANCHORS, boxes, classes)
  cut = assigner.assign_targets(ANCHORS, cut_boxes, cut_classes)
  for key, value in full.items():
    np.testing.assert_array_equal(cut[key], value, err_msg=key)


@pytest.mark.parametrize('jit_compile', [False, True])
def test_the_step_drops_padding_unless_shapes_must_be_static(
    jit_compile, tmp_path, monkeypatch):
  task = FakeDetection(_run_config(jit_compile=jit_compile))
  calls = []
  drop_padding = task.drop_padding
  monkeypatch.setattr(task, 'drop_padding',
                      lambda labels: calls.append(1) or drop_padding(labels))
  strategy = strategy_lib.build_strategy('one_device')
  trainer = Trainer(task.config, task, strategy, str(tmp_path))
  iterator = iter(strategy.distribute_datasets_from_function(
      task.train_dataset))
  trainer.train_loop_fn().get_concrete_function(iterator, tf.constant(1))
  assert bool(calls) != jit_compile
