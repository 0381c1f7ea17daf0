"""The model code is backend-portable: the same weights give the same
features under the Keras JAX backend as under TensorFlow."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import spinenet_tf

pytestmark = pytest.mark.skipif(importlib.util.find_spec('jax') is None,
                                reason='jax is not installed')

_JAX_FORWARD = textwrap.dedent('''
    import sys
    import numpy as np
    import keras
    assert keras.backend.backend() == 'jax', keras.backend.backend()
    import spinenet_tf
    weights, images, out = sys.argv[1:4]
    model = spinenet_tf.build_backbone('mobile-49XS', (None, None, 3),
                                       stochastic_depth_rate=0.1)
    model.load_weights(weights)
    features = model(np.load(images), training=False)
    np.savez(out, **{k: np.asarray(v) for k, v in features.items()})
''')


def test_backbone_forward_under_jax_matches_tensorflow(tmp_path):
  model = spinenet_tf.build_backbone('mobile-49XS', (None, None, 3),
                                     stochastic_depth_rate=0.1)
  for v in model.weights:
    v.assign(np.random.default_rng(len(v.path)).normal(1.0, 0.1, v.shape))
  images = np.random.default_rng(0).uniform(0, 1, (2, 128, 128, 3)).astype('float32')
  model.save_weights(str(tmp_path / 'w.weights.h5'))
  np.save(tmp_path / 'images.npy', images)
  env = dict(os.environ, KERAS_BACKEND='jax', JAX_PLATFORMS='cpu')
  subprocess.run([sys.executable, '-c', _JAX_FORWARD, str(tmp_path / 'w.weights.h5'),
                  str(tmp_path / 'images.npy'), str(tmp_path / 'jax.npz')],
                 check=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
  jax_features = np.load(tmp_path / 'jax.npz')
  tf_features = model(images, training=False)
  assert sorted(jax_features.files) == sorted(tf_features)
  for level, value in tf_features.items():
    np.testing.assert_allclose(jax_features[level], np.asarray(value),
                               rtol=1e-4, atol=1e-4)
