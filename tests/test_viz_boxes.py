"""Boxes on images: edges in the class colour, labels inside the image,
thresholds and padding, PNG output."""

import numpy as np
import pytest
from PIL import Image

from spinenet_tf.viz import boxes as viz

GREY = 128
BOX = [50, 60, 150, 200]  # ymin, xmin, ymax, xmax


def _image(height=200, width=300):
  return np.full((height, width, 3), GREY, np.uint8)


def _is(pixels, color):
  return np.all(pixels == np.array(color, np.uint8), axis=-1)


def test_box_edges_in_class_colour():
  image = _image()
  out = viz.draw_detections(image, [BOX], [2], [0.9])
  color = viz.class_color(2)
  assert out.shape == image.shape and out.dtype == np.uint8
  assert _is(out[100, 60], color) and _is(out[100, 199], color)  # left, right
  assert _is(out[50, 130], color) and _is(out[149, 130], color)  # top, bottom
  assert _is(out[100, 130], GREY)  # inside
  assert _is(out[100, 58], GREY) and _is(out[100, 201], GREY)  # outside
  assert np.all(image == GREY)  # the input is not drawn on


def test_label_above_box_and_inside_image():
  color = viz.class_color(7)
  out = viz.draw_detections(_image(), [BOX], [7], [0.87],
                            class_names={7: 'train'})
  assert _is(out[40:50, 60:90], color).mean() > 0.5  # label background
  assert not _is(out[40:50, 60:90], color).all()  # with text on it
  # At the top-left corner the label goes inside the box; at the right edge
  # it moves left to fit.
  out = viz.draw_detections(_image(), [[0, 0, 40, 40], [100, 280, 150, 300]],
                            [7, 7], [0.9, 0.9], class_names={7: 'long name'})
  assert _is(out[2:8, 5:30], color).mean() > 0.5
  assert _is(out[90:100, 240:300], color).mean() > 0.5


def test_below_threshold_and_padding_draw_nothing():
  image = _image()
  out = viz.draw_detections(image, [BOX, BOX, [0, 0, 0, 0]], [1, -1, -1],
                            [0.29, 0.9, 0.0], score_threshold=0.3)
  np.testing.assert_array_equal(out, image)
  out = viz.draw_detections(image, [BOX], [1], [0.3], score_threshold=0.3)
  assert _is(out[100, 60], viz.class_color(1))


def test_best_detection_on_top():
  out = viz.draw_detections(_image(), [BOX, BOX], [1, 2], [0.9, 0.5])
  assert _is(out[100, 60], viz.class_color(1))


def test_class_colours_are_distinct():
  colors = [viz.class_color(c) for c in range(1, 91)]
  assert len(set(colors)) == 90
  assert viz.class_color(3) == viz.class_color(np.int64(3))


def test_ground_truth_labels_have_no_score():
  color = viz.class_color(1)
  names = ['background', 'cat']  # a sequence indexed by class id
  truth = viz.draw_ground_truth(_image(), [BOX], [1], class_names=names)
  detection = viz.draw_detections(_image(), [BOX], [1], [0.9],
                                  class_names=names)
  assert _is(truth[100, 60], color)
  # The label's padding rows above the box are a full-width strip of colour.
  widths = [_is(out[30:50], color).sum(axis=1).max()
            for out in (truth, detection)]
  assert 0 < widths[0] < widths[1]


def test_png_written_and_readable(tmp_path):
  path = tmp_path / 'detections.png'
  out = viz.draw_detections(_image(), [BOX], [5], [0.8], path=str(path))
  with Image.open(path) as png:
    assert png.format == 'PNG'
    np.testing.assert_array_equal(np.asarray(png), out)
  assert [p.name for p in tmp_path.iterdir()] == ['detections.png']


def test_bad_image_is_named():
  with pytest.raises(ValueError, match='uint8'):
    viz.draw_detections(np.zeros((20, 20, 3), np.float32), [BOX], [1], [1.0])
