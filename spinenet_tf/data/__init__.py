"""Input pipelines: TFDS datasets and small offline datasets."""
