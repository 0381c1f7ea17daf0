"""Models built on the SpineNet layers."""
