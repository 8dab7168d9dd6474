"""MNIST split into given quadrants x and hidden quadrants y (Sohn et al. 2015).

The images come from the TFDS `mnist` pipeline of `cvae_jax.data.mnist`; the
validation split is the last `validation_size` images of TFDS's train split
(`train[-10000:]`), the training split the rest.

Each example is a dict of flattened [784] arrays:
  condition    x: the given quadrants' pixels, -1 (`HIDDEN`) elsewhere;
  target       y: the hidden quadrants' pixels, 0 elsewhere;
  target_mask  bool, True on the hidden quadrants (the pixels to predict).
"""

from pathlib import Path
from typing import Sequence

import numpy as np

from cvae_jax.data import mnist
from cvae_jax.errors import ConfigError

__all__ = ["HIDDEN", "SIDE", "QUADRANTS", "BINARISATIONS",
           "check_quadrant_config", "given_pixels", "split_by_quadrants",
           "binarise", "load_quadrant_splits"]

HIDDEN = -1.0  # Value of x's hidden pixels; the models read it the same way
# (cvae_jax.models.quadrant.HIDDEN, equal: tested). Data knows no model.

SIDE = 28
QUADRANTS = {  # name -> (rows, columns) of the 28 x 28 image.
    "top_left": (slice(0, 14), slice(0, 14)),
    "top_right": (slice(0, 14), slice(14, 28)),
    "bottom_left": (slice(14, 28), slice(0, 14)),
    "bottom_right": (slice(14, 28), slice(14, 28)),
}
BINARISATIONS = ("none", "threshold", "stochastic")


def check_quadrant_config(num_quadrants: int, order: Sequence[str]) -> None:
  """Raises ConfigError unless 1 <= num_quadrants <= 3 and `order` names
  distinct quadrants, at least num_quadrants of them."""
  if num_quadrants not in (1, 2, 3) or isinstance(num_quadrants, bool):
    raise ConfigError(f"num_quadrants must be 1, 2 or 3, got {num_quadrants!r}; "
                      "set --config.num_quadrants")
  unknown = [q for q in order if q not in QUADRANTS]
  if unknown or len(set(order)) != len(order) or len(order) < num_quadrants:
    raise ConfigError(
        f"quadrant_order must list at least {num_quadrants} distinct quadrants "
        f"of {sorted(QUADRANTS)}, got {list(order)}")


def given_pixels(num_quadrants: int, order: Sequence[str]) -> np.ndarray:
  """Boolean [784]: True on the first `num_quadrants` quadrants of `order`."""
  check_quadrant_config(num_quadrants, order)
  given = np.zeros((SIDE, SIDE), bool)
  for name in order[:num_quadrants]:
    given[QUADRANTS[name]] = True
  return given.reshape(-1)


def split_by_quadrants(images: np.ndarray, num_quadrants: int,
                       order: Sequence[str]) -> dict[str, np.ndarray]:
  """[N, 784] pixels in [0, 1] -> {condition, target, target_mask}, [N, 784]."""
  given = given_pixels(num_quadrants, order)
  images = images.astype(np.float32)
  return {
      "condition": np.where(given, images, np.float32(HIDDEN)),
      "target": np.where(given, np.float32(0), images),
      "target_mask": np.broadcast_to(~given, images.shape).copy(),
  }


def binarise(images: np.ndarray, mode: str, seed: int) -> np.ndarray:
  """Pixels for a Bernoulli likelihood.

  "none": grey levels in [0, 1] as targets (the Pyro example);
  "threshold": 1 where the grey level > 0.5 (deterministic);
  "stochastic": 1 with probability = the grey level, drawn once with `seed`
    (a fixed binarised copy, the same in every epoch).
  """
  if mode == "none":
    return images.astype(np.float32)
  if mode == "threshold":
    return (images > 0.5).astype(np.float32)
  if mode == "stochastic":
    draws = np.random.default_rng(seed).random(images.shape, dtype=np.float32)
    return (draws < images).astype(np.float32)
  raise ConfigError(f"binarisation must be one of {BINARISATIONS}, got "
                    f"{mode!r}; set --config.binarisation")


def load_quadrant_splits(data_dir: str | Path, num_quadrants: int,
                         order: Sequence[str], binarisation: str,
                         validation_size: int, seed: int
                         ) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "validation", "test"} -> `split_by_quadrants` arrays.

  Each split is binarised with its own seed (derived from `seed`).
  """
  check_quadrant_config(num_quadrants, order)
  splits = mnist.held_out_splits(data_dir, validation_size)
  result = {}
  for index, (name, split) in enumerate(splits.items()):
    pixels = mnist.load_mnist_arrays(data_dir, split)["target"]
    pixels = binarise(pixels, binarisation, seed + index)
    result[name] = split_by_quadrants(pixels, num_quadrants, order)
  return result
