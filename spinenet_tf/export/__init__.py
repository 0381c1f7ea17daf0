"""Checkpoint conversion and model export."""
