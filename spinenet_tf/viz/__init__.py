"""Pictures: the SpineNet architecture diagram and boxes drawn on images."""

from spinenet_tf.viz.architecture import draw_architecture
from spinenet_tf.viz.boxes import draw_detections, draw_ground_truth
