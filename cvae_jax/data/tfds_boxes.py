"""Pascal VOC 2007 boxes through TFDS (`voc/2007`), in the box interface of
`cvae_jax.data.mnist_boxes`:

  image   float32 [N, size, size, 3] in [0, 1] (stretched to a square, so
          normalised box coordinates are unchanged)
  boxes   float32 [N, M, 4] (cx, cy, w, h) normalised; the first M objects
  labels  int32   [N, M] VOC classes 0-19, -1 for padding rows
  query   int32   [N] one object per image, drawn under `seed` (fixed)

Images without objects are skipped. TFDS downloads VOC (about 900 MB) on
first use; TensorFlow is imported on first use.
"""

from pathlib import Path

import numpy as np

from cvae_jax.data.mnist import unreadable_records_as_user_errors
from cvae_jax.data.tf_import import tensorflow
from cvae_jax.errors import UserError
from cvae_jax import distributed

__all__ = ["NUM_CLASSES", "SPLITS", "to_box_example", "box_dataset",
           "load_box_arrays"]

NUM_CLASSES = 20
SPLITS = {"train": "train", "validation": "validation", "test": "test"}


def to_box_example(example: dict, size: int, max_objects: int) -> dict:
  """One TFDS VOC example -> {"image", "boxes", "labels"} (tensors)."""
  tf, _ = tensorflow()
  image = tf.image.resize(tf.cast(example["image"], tf.float32) / 255.0,
                          (size, size), antialias=True)
  corners = example["objects"]["bbox"][:max_objects]  # (ymin, xmin, ymax, xmax)
  y0 = tf.minimum(corners[:, 0], corners[:, 2])
  y1 = tf.maximum(corners[:, 0], corners[:, 2])
  x0 = tf.minimum(corners[:, 1], corners[:, 3])
  x1 = tf.maximum(corners[:, 1], corners[:, 3])
  boxes = tf.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)
  labels = tf.cast(example["objects"]["label"][:max_objects], tf.int32)
  pad = max_objects - tf.shape(labels)[0]
  return {"image": tf.clip_by_value(image, 0.0, 1.0),
          "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), (max_objects, 4)),
          "labels": tf.ensure_shape(tf.pad(labels, [[0, pad]], constant_values=-1),
                                    (max_objects,))}


def box_dataset(name: str, split: str, data_dir: str | Path, size: int,
                max_objects: int, download: bool = True):
  """An unbatched tf.data.Dataset of `to_box_example` examples, file order.

  Raises:
    UserError: the dataset is not prepared and cannot be, or no such split.
  """
  tf, tfds = tensorflow()
  data_dir = Path(data_dir).expanduser()
  builder = tfds.builder(name, data_dir=str(data_dir))
  how = (f"run where TFDS can download (e.g. Colab) with download=True, or "
         f"`tfds build {name} --data_dir={data_dir}`, then copy that data_dir here")
  if download:
    try:
      with distributed.main_process_first(f"prepare {name}"):
        builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"TFDS {name} is not prepared in {data_dir} and preparing "
                      f"it failed ({type(e).__name__}): {how}") from e
  try:
    ds = builder.as_dataset(split=split, shuffle_files=False)
  except AssertionError as e:  # TFDS: "could not find data in <data_dir>".
    raise UserError(f"TFDS {name} is not prepared in {data_dir}: {how}") from e
  except ValueError as e:  # Unknown split or bad slice syntax.
    raise UserError(f"cannot read split {split!r} of TFDS {name}; its splits "
                    "are train, validation and test") from e
  ds = ds.filter(lambda e: tf.size(e["objects"]["label"]) > 0)
  return ds.map(lambda e: to_box_example(e, size, max_objects),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def load_box_arrays(name: str, split: str, data_dir: str | Path, size: int,
                    max_objects: int, seed: int = 0, download: bool = True,
                    max_examples: int | None = None) -> dict[str, np.ndarray]:
  """A whole split in memory: the arrays of the module docstring."""
  _, tfds = tensorflow()
  ds = box_dataset(name, split, data_dir, size, max_objects, download)
  if max_examples:
    ds = ds.take(max_examples)
  with unreadable_records_as_user_errors(data_dir, name):
    examples = list(tfds.as_numpy(ds))
  if not examples:
    raise UserError(f"{name} split {split!r} in {data_dir} holds no image with "
                    "an object")
  arrays = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  rng = np.random.default_rng((seed, list(SPLITS).index(split) if split in SPLITS else 0))
  counts = (arrays["labels"] >= 0).sum(axis=1)
  arrays["query"] = (rng.random(len(counts)) * counts).astype(np.int32)
  return arrays
