"""Every test process sees 4 CPU devices, so the multi-device paths run here.
Fixtures only; shared helper functions are in tests/helpers.py."""

import chex

chex.set_n_cpu_devices(4)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory):
  """A TFDS `mnist` data_dir built by the offline builder: 400 train, 100 test."""
  from cvae_jax.data import offline_mnist  # pylint: disable=g-import-not-at-top
  from helpers import write_fake_mnist_pickle  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("tiny_mnist")
  pickle_path = write_fake_mnist_pickle(root / "fake.pkl.gz")
  data_dir = root / "tfds"
  offline_mnist.build_mnist(data_dir, pickle_path=pickle_path)
  return data_dir
