"""SpineNet-TF command lines (absl flags; installed as spinenet-* commands)."""
