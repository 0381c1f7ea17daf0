"""scripts/train.py with TensorFlow Datasets mocked: runs a shipped TFDS
config (COCO, iNaturalist, ImageNet) on generated examples, without the data
and without a network.

    python tests/tfds_mock_train.py --experiment=retinanet_spinenet49s_coco \
      --model_dir=/tmp/run --data_dir=/nonexistent --params_override=...

`tfds.testing.mock_data` (MockPolicy.USE_CODE: the builders' own feature
definitions, no metadata files) serves i_naturalist2017 and imagenet2012
with its own random examples. For coco/2017 its generator cannot make an
example: it draws each field of the `objects` sequence with its own length
and boxes with min > max, and TFDS's own encoder rejects both (a limit of
the mock, not of the COCO data or our parser), so COCO examples are made
here: random JPEGs of random sizes with 1..5 valid boxes each, encoded and
decoded by the builder's features as the mock does.
"""
import functools
import os
import sys
from unittest import mock

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from spinenet_tf.training import main  # noqa: E402

NUM_EXAMPLES = 4


def coco_examples(features, split):
  rng = np.random.default_rng(0 if split.startswith('train') else 1)
  for i in range(NUM_EXAMPLES):
    height, width = (int(s) for s in rng.integers(48, 160, size=2))
    n = int(rng.integers(1, 6))
    ymin, xmin = rng.uniform(0.0, 0.6, size=(2, n))
    ymax = ymin + rng.uniform(0.2, 0.4, n)
    xmax = xmin + rng.uniform(0.2, 0.4, n)
    boxes = np.clip(np.stack([ymin, xmin, ymax, xmax], 1), 0, 1)
    yield features.encode_example({
        'image': rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        'image/filename': f'{i + 1:012d}.jpg',
        'image/id': i + 1,
        'objects': {
            'id': np.arange(n) + 100 * i,
            'area': ((ymax - ymin) * height * (xmax - xmin) * width).astype(
                np.int64),
            'bbox': boxes.astype(np.float32),
            'is_crowd': np.zeros(n, bool),
            'label': rng.integers(0, 80, n),
        },
    })


def coco_as_dataset(builder, split, decoders=None, read_config=None):
  """What `FileReaderBuilder._as_dataset` returns, on generated examples."""
  features = builder.info.features
  signature = tf.nest.map_structure(
      lambda info: tf.TensorSpec(info.shape, info.tf_dtype),
      features.get_serialized_info())
  ds = tf.data.Dataset.from_generator(
      functools.partial(coco_examples, features, str(split)),
      output_signature=signature)
  ds = ds.apply(tf.data.experimental.assert_cardinality(NUM_EXAMPLES))
  ds = ds.map(functools.partial(features.decode_example, decoders=decoders))
  if read_config and read_config.add_tfds_id:
    ids = tf.data.Dataset.range(NUM_EXAMPLES).map(lambda i: tf.strings.join(
        [f'coco-{split}.tfrecord-00000-of-00001__', tf.strings.as_string(i)]))
    ds = tf.data.Dataset.zip(ds, ids).map(
        lambda example, id_: {'tfds_id': id_, **example})
  return ds


def run():
  reader = tfds.core.dataset_builder.FileReaderBuilder
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    mocked = reader._as_dataset

    def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
      if self.name == 'coco':
        return coco_as_dataset(self, split, decoders, read_config)
      return mocked(self, split, decoders=decoders, read_config=read_config,
                    **kwargs)

    with mock.patch.object(reader, '_as_dataset', as_dataset):
      main.run()


if __name__ == '__main__':
  run()
