"""Real segmentation datasets through TFDS: CUB-200-2011 birds and Oxford pets.

`tfds.builder(name, data_dir=...)`, prepared on first use where TFDS can
download (Colab; CUB is ~1.2 GB, pets ~0.8 GB). Each example becomes an RGB
image and one binary foreground mask, both resized to S x S:

* image: bilinear (antialiased when shrinking) straight to S x S, ignoring the
  aspect ratio, as Sohn et al.'s 128 x 128 CUB runs do; uint8 / 255 in [0, 1].
  Grey images are broadcast to 3 channels, an alpha channel is dropped.
* masks: the foreground rule below, then nearest-neighbour to S x S, so they
  stay exactly {0, 1}.

Foreground rules (`foreground_mask`):

* caltech_birds2011: `segmentation_mask` holds grey levels 0..255, the average
  of CUB's several annotators; foreground = mask > 127 (the majority).
* oxford_iiit_pet: `segmentation_mask` is the trimap 1 pet, 2 background,
  3 border / unclassified; foreground = mask != 2, i.e. the pet with its
  border ring (the border is the uncertain outline of the pet, not background).
"""

from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cvae_jax.errors import ConfigError, UserError, first_line
from cvae_jax import distributed

__all__ = ["DATASETS", "foreground_mask", "segmentation_dataset",
           "load_segmentation_arrays", "validation_split"]

# tf.data runs on the host; keep TensorFlow off any GPU so JAX has its memory.
try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TensorFlow already initialised (by another module).
  pass

DATASETS = ("caltech_birds2011", "oxford_iiit_pet")

_CUB_THRESHOLD = 127  # caltech_birds2011: foreground = grey level > 127.
_PET_BACKGROUND = 2  # oxford_iiit_pet trimap: 1 pet, 2 background, 3 border.
_BATCH = 256  # Examples per tf.data batch when loading a split into memory.


def _check_name(name: str) -> None:
  if name not in DATASETS:
    raise ConfigError(f"unknown segmentation dataset {name!r}: choose one of "
                      f"{', '.join(DATASETS)}; set --config.dataset")


def _check_image_size(image_size) -> None:
  if (not isinstance(image_size, (int, np.integer))
      or isinstance(image_size, bool) or image_size <= 0):
    raise ConfigError(f"image_size must be a positive integer, got "
                      f"{image_size!r}; set --config.image_size")


def _not_prepared(name: str, data_dir: Path, reason: str) -> UserError:
  return UserError(
      f"TFDS {name} is not prepared in {data_dir} and {reason}: run where TFDS "
      f"can download (e.g. Colab) with download=True, or `tfds build {name} "
      f"--data_dir={data_dir}`, then copy that data_dir here")


def _builder(name: str, data_dir: str | Path,
             download: bool) -> tuple[tfds.core.DatasetBuilder, Path]:
  """The TFDS builder, prepared first when `download` (a no-op if it is)."""
  _check_name(name)
  data_dir = Path(data_dir).expanduser()
  builder = tfds.builder(name, data_dir=str(data_dir))
  if download:
    try:
      with distributed.main_process_first(f"prepare {name}"):
        builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      raise _not_prepared(name, data_dir,
                          f"preparing it failed ({first_line(e)})") from e
  return builder, data_dir


def foreground_mask(name: str, segmentation_mask) -> tf.Tensor:
  """The dataset's foreground rule (module docstring) on a raw TFDS mask.

  Args:
    name: one of DATASETS.
    segmentation_mask: uint8 array, any shape (TFDS gives [H, W, 1]).

  Returns:
    float32 tensor of the same shape, 1 on the foreground and 0 elsewhere.
  """
  _check_name(name)
  mask = tf.convert_to_tensor(segmentation_mask)
  if name == "caltech_birds2011":
    foreground = mask > _CUB_THRESHOLD
  else:
    foreground = tf.not_equal(mask, _PET_BACKGROUND)
  return tf.cast(foreground, tf.float32)


def _to_example(name: str, image_size: int, features: dict) -> dict:
  size = [image_size, image_size]
  image = features["image"]
  # Grey [H, W, 1] -> RGB by broadcasting; RGBA -> RGB by dropping alpha.
  image = tf.broadcast_to(image[..., :3],
                          tf.concat([tf.shape(image)[:2], [3]], axis=0))
  image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, size,
                          method="bilinear", antialias=True)
  image = tf.clip_by_value(image, 0.0, 1.0)
  mask = foreground_mask(name, features["segmentation_mask"][..., :1])
  mask = tf.image.resize(mask, size, method="nearest")
  image = tf.ensure_shape(image, [image_size, image_size, 3])
  mask = tf.ensure_shape(tf.transpose(mask, [2, 0, 1]),
                         [1, image_size, image_size])
  return {"image": image, "masks": mask}


def segmentation_dataset(name: str, split: str, data_dir: str | Path,
                         image_size: int,
                         download: bool = True) -> tf.data.Dataset:
  """Unbatched, deterministic (file order) stream of {"image": float32 [S, S, 3]
  in [0, 1], "masks": float32 [1, S, S] in {0, 1}} with S = image_size.

  Args:
    name: one of DATASETS.
    split: a TFDS split string, e.g. "train[:90%]" (see `validation_split`).
    data_dir: the TFDS data_dir holding (or to receive) the dataset.
    image_size: S, pixels per side.
    download: prepare the dataset where it is missing (needs the network).

  Raises:
    ConfigError: unknown name or bad image_size.
    UserError: the dataset is not prepared and cannot be, or no such split.
  """
  _check_image_size(image_size)
  builder, data_dir = _builder(name, data_dir, download)
  try:
    ds = builder.as_dataset(
        split=split, shuffle_files=False,
        decoders=tfds.decode.PartialDecoding(
            {"image": True, "segmentation_mask": True}))
  except AssertionError as e:  # TFDS: "could not find data in <data_dir>".
    reason = ("downloads are off" if not download
              else f"reading it failed ({first_line(e)})")
    raise _not_prepared(name, data_dir, reason) from e
  except ValueError as e:  # Unknown split or bad slice syntax.
    raise UserError(f"cannot read split {split!r} of TFDS {name} "
                    f"({first_line(e)}); its splits are train and test, "
                    "sliced like train[:90%]") from e
  return ds.map(lambda features: _to_example(name, int(image_size), features),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def load_segmentation_arrays(name: str, split: str, data_dir: str | Path,
                             image_size: int, download: bool = True,
                             max_examples: int | None = None
                             ) -> dict[str, np.ndarray]:
  """A whole split (or its first max_examples) in memory.

  Returns:
    {"image": float32 [N, S, S, 3] in [0, 1], "masks": float32 [N, 1, S, S]
    in {0, 1}}, in `segmentation_dataset`'s order.
  """
  if max_examples is not None and (
      not isinstance(max_examples, (int, np.integer))
      or isinstance(max_examples, bool) or max_examples <= 0):
    raise ConfigError(f"max_examples must be a positive integer or None, got "
                      f"{max_examples!r}")
  ds = segmentation_dataset(name, split, data_dir, image_size, download)
  if max_examples is not None:
    ds = ds.take(int(max_examples))
  batches = list(tfds.as_numpy(ds.batch(_BATCH)))
  if not batches:
    return {"image": np.zeros((0, image_size, image_size, 3), np.float32),
            "masks": np.zeros((0, 1, image_size, image_size), np.float32)}
  return {key: np.concatenate([b[key] for b in batches])
          for key in ("image", "masks")}


def validation_split(name: str, validation_fraction: float
                     ) -> tuple[str, str, str]:
  """TFDS split strings (train, validation, test).

  Both datasets have only TFDS splits train and test; validation is the last
  `validation_fraction` of train, e.g. 0.1 -> ("train[:90%]", "train[90%:]",
  "test"). TFDS rounds both percent boundaries alike, so the two are disjoint
  and cover train.

  Raises:
    ConfigError: unknown name, or the fraction is not in (0, 1).
  """
  _check_name(name)
  if (not isinstance(validation_fraction, (int, float, np.floating))
      or isinstance(validation_fraction, bool)
      or not 0.0 < validation_fraction < 1.0):
    raise ConfigError(f"validation_fraction must be in (0, 1), got "
                      f"{validation_fraction!r}; set "
                      "--config.validation_fraction")
  # Fixed-point percent: TFDS's slice syntax takes no exponent (1e-05%).
  percent = f"{100.0 * (1.0 - float(validation_fraction)):.6f}"
  percent = percent.rstrip("0").rstrip(".")
  return f"train[:{percent}%]", f"train[{percent}%:]", "test"
