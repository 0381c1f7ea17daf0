"""Pictures: the SpineNet architecture diagram."""

from spinenet_tf.viz.architecture import draw_architecture
