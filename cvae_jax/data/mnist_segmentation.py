"""An offline segmentation set derived from real MNIST (TFDS `mnist`).

Each example is a `size` x `size` canvas (32 by default):
  * the **target digit**, an MNIST image pasted at a random offset;
  * **clutter**: `num_fragments` square crops (`fragment_size` px) of *other*
    MNIST digits, pasted anywhere (also over the digit) by pixel-wise max, so
    strokes that belong to no digit surround and touch the target;
  * **noise**: Gaussian, `noise_std`, clipped to [0, 1];
  * **partial observation** (Sohn et al. 2015): `occlusion_blocks` squares of
    `occlusion_size` px, placed over the digit's area, are set to 0.
The target is the target digit's foreground mask (its pixels > 0.5), under
the blocks too: what the digit does there cannot be seen, so several masks
fit the input (the ambiguity a CVAE is for); elsewhere the net must tell
a whole digit from fragments of others.

Everything is drawn from `numpy.random.default_rng((seed, split index))`
over the TFDS splits, so a split is the same on every machine and run.
The validation split is the last `validation_size` images of TFDS's train
split, as for the quadrant task.

Arrays, the segmentation interface of `cvae_jax.data`:
  image     float32 [N, size, size, 1] in [0, 1]
  masks     float32 [N, 1, size, size] in {0, 1} (one grader)
  occluded  bool    [N, size, size], True under a block (for the figures)
"""

import dataclasses
from pathlib import Path

import numpy as np

from cvae_jax.data import mnist
from cvae_jax.errors import ConfigError

__all__ = ["DIGIT_SIDE", "SPLITS", "CanvasSpec", "draw_canvases",
           "load_segmentation_splits", "example_grid"]

DIGIT_SIDE = 28
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class CanvasSpec:
  """How a canvas is drawn: one digit among `num_fragments` fragments of
  others, pixel noise, and `occlusion_blocks` grey blocks over it; every
  field is a config value (sizes in pixels)."""
  size: int = 32
  num_fragments: int = 3
  fragment_size: int = 12
  noise_std: float = 0.1
  occlusion_blocks: int = 0
  occlusion_size: int = 10

  def check(self) -> None:
    """Raises ConfigError naming the field for impossible values."""
    mnist.check_canvas_fits_a_digit(self.size)
    if not 0 < self.fragment_size <= DIGIT_SIDE:
      raise ConfigError(f"data.fragment_size must be in 1..{DIGIT_SIDE}, got "
                        f"{self.fragment_size}; set --config.data.fragment_size")
    if self.num_fragments < 0 or self.occlusion_blocks < 0:
      raise ConfigError("data.num_fragments and occlusion.blocks must be >= 0; "
                        "set --config.data.num_fragments / --config.occlusion.blocks")
    if self.noise_std < 0:
      raise ConfigError(f"data.noise_std must be >= 0, got {self.noise_std}; "
                        "set --config.data.noise_std")
    if self.occlusion_blocks and not 0 < self.occlusion_size <= self.size:
      raise ConfigError(
          f"occlusion.size={self.occlusion_size} must be in 1..{self.size} (the "
          f"image side); set --config.occlusion.size")


def draw_canvases(digits: np.ndarray, spec: CanvasSpec,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Canvases around each of `digits` ([N, 28, 28] in [0, 1]); clutter comes
  from the same array (another digit than the target). Returns the arrays of
  the module docstring."""
  n, s = len(digits), spec.size
  image = np.zeros((n, s, s), np.float32)
  mask = np.zeros((n, s, s), np.float32)
  occluded = np.zeros((n, s, s), bool)
  offsets = rng.integers(0, s - DIGIT_SIDE + 1, (n, 2))
  f = spec.fragment_size
  for i in range(n):
    top, left = offsets[i]
    image[i, top:top + DIGIT_SIDE, left:left + DIGIT_SIDE] = digits[i]
    mask[i] = image[i] > 0.5
    for _ in range(spec.num_fragments):
      other = (i + rng.integers(1, n)) % n if n > 1 else i
      crop_top, crop_left = rng.integers(0, DIGIT_SIDE - f + 1, 2)
      fragment = digits[other, crop_top:crop_top + f, crop_left:crop_left + f]
      at_top, at_left = rng.integers(0, s - f + 1, 2)
      window = image[i, at_top:at_top + f, at_left:at_left + f]
      np.maximum(window, fragment, out=window)
  if spec.noise_std:
    image = np.clip(image + rng.normal(0, spec.noise_std, image.shape)
                    .astype(np.float32), 0.0, 1.0)
  b = spec.occlusion_size
  for i in range(n):
    for _ in range(spec.occlusion_blocks):
      # Over the digit's 28 x 28 area, so the block hides part of the target.
      top, left = offsets[i] + rng.integers(0, DIGIT_SIDE - min(b, DIGIT_SIDE) + 1, 2)
      top, left = min(top, s - b), min(left, s - b)
      occluded[i, top:top + b, left:left + b] = True
  image[occluded] = 0.0
  return {"image": image[..., None], "masks": mask[:, None], "occluded": occluded}


def load_segmentation_splits(data_dir: str | Path, spec: CanvasSpec,
                             validation_size: int, seed: int,
                             max_examples: dict[str, int] | None = None
                             ) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "validation", "test"} -> `draw_canvases` arrays.

  Args:
    max_examples: split name -> keep only its first n digits (0/None: all).
  """
  spec.check()
  return mnist.offline_splits(
      data_dir, validation_size, seed,
      lambda arrays, rng: draw_canvases(
          arrays["target"].reshape(-1, DIGIT_SIDE, DIGIT_SIDE), spec, rng),
      max_examples)


def example_grid(data_dir: str | Path, count: int = 10, seed: int = 0,
                 occlusions=(0, 1, 2)) -> np.ndarray:
  """[2 * len(occlusions), count, size, size]: test canvases (occluded blocks
  grey) above their target masks, one pair of rows per occlusion level, the
  same digits and clutter in each."""
  digits = mnist.load_mnist_arrays(data_dir, f"test[:{count}]")["target"]
  rows = []
  for blocks in occlusions:
    arrays = draw_canvases(digits.reshape(-1, DIGIT_SIDE, DIGIT_SIDE),
                           CanvasSpec(occlusion_blocks=blocks),
                           np.random.default_rng((seed, len(SPLITS) - 1)))
    rows += [np.where(arrays["occluded"], 0.5, arrays["image"][..., 0]),
             arrays["masks"][:, 0]]
  return np.stack(rows)


if __name__ == "__main__":
  mnist.write_example_figure(example_grid, 'Draws test examples of the offline segmentation set.', "docs/segmentation_examples.png")
