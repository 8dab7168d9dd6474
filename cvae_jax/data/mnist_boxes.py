"""An offline bounding-box set derived from real MNIST (TFDS `mnist`).

Each example is a `size` x `size` canvas (64 by default) holding between
`min_digits` and `max_digits` MNIST digits (2-4), pasted by pixel-wise max at
random offsets such that the boxes of any two digits overlap by IoU at most
`max_box_iou`. A digit's box is the tight box around its nonzero pixels, so
every pixel outside all boxes is background (0). The target of an example is
the box of one of its digits, drawn anew each time the example is used, so
every canvas has a known **set of valid boxes**: all of its digits' boxes
("image" condition) or, given a class c, those of the digits of class c
("class" condition; c occurs once or several times).

Everything is drawn from `numpy.random.default_rng((seed, split index))`
over the TFDS splits (the validation split is the last `validation_size`
images of TFDS's train split), so a split is the same on every machine.
Digits are taken in order from the split: canvas i uses the next 2-4 digits.

Arrays, the box interface of `cvae_jax.data` (also `tfds_boxes`):
  image   float32 [N, size, size, 1] in [0, 1]
  boxes   float32 [N, M, 4] (cx, cy, w, h) / size, M = max_digits; padding 0
  labels  int32   [N, M] digit classes, -1 for padding rows
  query   int32   [N] index of the digit an evaluation asks for (fixed)
"""

import dataclasses
from pathlib import Path

import numpy as np

from cvae_jax.data import mnist
from cvae_jax.errors import ConfigError

__all__ = ["DIGIT_SIDE", "SPLITS", "CanvasSpec", "digit_box", "draw_canvases",
           "valid_box_mask", "load_box_splits", "example_grid"]

DIGIT_SIDE = 28
SPLITS = ("train", "validation", "test")
_PLACEMENT_TRIES = 200  # Random offsets tried for a digit before a restart.


@dataclasses.dataclass(frozen=True)
class CanvasSpec:
  """How a canvas is drawn: min_digits..max_digits digits whose boxes
  overlap by at most `max_box_iou`; every field is a config value."""
  size: int = 64
  min_digits: int = 2
  max_digits: int = 4
  max_box_iou: float = 0.1

  def check(self) -> None:
    """Raises ConfigError naming the field for impossible values: a canvas
    must hold max_digits digits side by side."""
    mnist.check_canvas_fits_a_digit(self.size)
    if not 1 <= self.min_digits <= self.max_digits:
      raise ConfigError(f"data.min_digits={self.min_digits} and data.max_digits="
                        f"{self.max_digits} must satisfy 1 <= min <= max; set "
                        "--config.data.min_digits / --config.data.max_digits")
    fit = (self.size // DIGIT_SIDE) ** 2
    if self.max_digits > fit:
      raise ConfigError(
          f"data.max_digits={self.max_digits} digits do not fit on a "
          f"{self.size} x {self.size} canvas (at most {fit} side by side); "
          f"lower --config.data.max_digits or raise --config.image_size")
    if not 0.0 <= self.max_box_iou < 1.0:
      raise ConfigError(f"data.max_box_iou must be in [0, 1), got "
                        f"{self.max_box_iou}; set --config.data.max_box_iou")


def digit_box(digit: np.ndarray) -> tuple[int, int, int, int]:
  """(top, left, bottom, right) of the nonzero pixels of a [28, 28] digit
  (bottom / right exclusive); the whole frame if it is blank."""
  rows, cols = np.nonzero(digit.any(axis=1))[0], np.nonzero(digit.any(axis=0))[0]
  if not len(rows):
    return 0, 0, DIGIT_SIDE, DIGIT_SIDE
  return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def _pixel_iou(a, b) -> float:
  """IoU of two (top, left, bottom, right) pixel boxes."""
  height = min(a[2], b[2]) - max(a[0], b[0])
  width = min(a[3], b[3]) - max(a[1], b[1])
  intersection = max(height, 0) * max(width, 0)
  area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
  return intersection / (area(a) + area(b) - intersection)


def _place(boxes_in_frame, size: int, max_iou: float, rng: np.random.Generator):
  """Frame offsets (top, left) for digits whose boxes (in their 28 x 28
  frames) overlap pairwise by IoU <= max_iou: random offsets with restarts,
  else the digits side by side on a grid of 28 x 28 cells (always fits)."""
  for _ in range(_PLACEMENT_TRIES):
    placed, offsets = [], []
    for box in boxes_in_frame:
      for _ in range(_PLACEMENT_TRIES):
        top, left = rng.integers(0, size - DIGIT_SIDE + 1, 2)
        moved = (box[0] + top, box[1] + left, box[2] + top, box[3] + left)
        if all(_pixel_iou(moved, other) <= max_iou for other in placed):
          placed.append(moved)
          offsets.append((top, left))
          break
      else:
        break
    if len(offsets) == len(boxes_in_frame):
      return offsets
  cells = size // DIGIT_SIDE
  chosen = rng.permutation(cells * cells)[:len(boxes_in_frame)]
  return [(DIGIT_SIDE * (c // cells), DIGIT_SIDE * (c % cells)) for c in chosen]


def draw_canvases(digits: np.ndarray, labels: np.ndarray, spec: CanvasSpec,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Canvases from `digits` ([N, 28, 28] in [0, 1], classes `labels` [N]),
  used in order, 2-4 per canvas, until they run out. Returns the arrays of
  the module docstring."""
  spec.check()
  counts = []
  remaining = len(digits)
  while remaining >= spec.min_digits:
    count = min(int(rng.integers(spec.min_digits, spec.max_digits + 1)), remaining)
    counts.append(count)
    remaining -= count
  n, s, m = len(counts), spec.size, spec.max_digits
  image = np.zeros((n, s, s), np.float32)
  boxes = np.zeros((n, m, 4), np.float32)
  box_labels = np.full((n, m), -1, np.int32)
  query = np.zeros(n, np.int32)
  start = 0
  for i, count in enumerate(counts):
    chosen = range(start, start + count)
    start += count
    frames = [digit_box(digits[j]) for j in chosen]
    offsets = _place(frames, s, spec.max_box_iou, rng)
    for slot, (j, frame, (top, left)) in enumerate(zip(chosen, frames, offsets)):
      window = image[i, top:top + DIGIT_SIDE, left:left + DIGIT_SIDE]
      np.maximum(window, digits[j], out=window)
      y0, x0, y1, x1 = frame[0] + top, frame[1] + left, frame[2] + top, frame[3] + left
      boxes[i, slot] = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
      box_labels[i, slot] = labels[j]
    query[i] = rng.integers(0, count)
  return {"image": image[..., None], "boxes": boxes / s, "labels": box_labels,
          "query": query}


def valid_box_mask(labels: np.ndarray, query_class: np.ndarray | None = None
                   ) -> np.ndarray:
  """[N, M] bool: the valid boxes, all digits' (query_class None) or those of
  the digits of class query_class [N]."""
  if query_class is None:
    return labels >= 0
  return (labels >= 0) & (labels == np.asarray(query_class)[:, None])


def load_box_splits(data_dir: str | Path, spec: CanvasSpec, validation_size: int,
                    seed: int, max_examples: dict[str, int] | None = None
                    ) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "validation", "test"} -> `draw_canvases` arrays.

  Args:
    max_examples: split name -> keep only its first n canvases (0/None: all).
  """
  spec.check()

  def draw(arrays, rng):  # Up to max_digits digits per canvas, with labels.
    digits = arrays["target"].reshape(-1, DIGIT_SIDE, DIGIT_SIDE)
    return draw_canvases(digits, arrays["condition"], spec, rng)
  return mnist.offline_splits(data_dir, validation_size, seed, draw, max_examples,
                              digits_per_example=spec.max_digits)


def example_grid(data_dir: str | Path, count: int = 8, seed: int = 0) -> np.ndarray:
  """[count, size, size] test canvases with their digits' boxes drawn in
  grey (0.5) on the background."""
  arrays = mnist.load_mnist_arrays(data_dir, f"test[:{count * 4}]")
  canvases = draw_canvases(arrays["target"].reshape(-1, DIGIT_SIDE, DIGIT_SIDE),
                           arrays["condition"], CanvasSpec(),
                           np.random.default_rng((seed, len(SPLITS) - 1)))
  images = canvases["image"][:count, ..., 0].copy()
  size = images.shape[-1]
  for image, boxes, labels in zip(images, canvases["boxes"], canvases["labels"]):
    for (cx, cy, w, h), label in zip(boxes * size, labels):
      if label < 0:
        continue
      x0, y0, x1, y1 = (int(round(v)) for v in (cx - w / 2, cy - h / 2,
                                                cx + w / 2, cy + h / 2))
      outline = np.zeros_like(image, bool)
      outline[y0:y1, x0:x1] = True
      outline[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = False
      image[outline & (image == 0)] = 0.5
  return images[None]


if __name__ == "__main__":
  mnist.write_example_figure(example_grid, 'Draws test canvases of the offline box set with their boxes.', "docs/bbox_examples.png")
