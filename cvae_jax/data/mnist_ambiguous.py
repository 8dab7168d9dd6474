"""An ambiguous segmentation set derived from real MNIST, whose graders'
distribution is known exactly.

Each image is a `size` x `size` canvas (32 by default) holding two real MNIST
digits shrunk to `digit_size` px (14 by default; area averaging), side by side: the right
one starts 1-3 px after the left one's ink ends, so no stroke is shared and
the image alone tells every pixel's digit. Its G graders each draw a mask
from one distribution over K = 7 candidate masks, with the two kinds of
disagreement that LIDC's graders show:

* **which structure**: the left digit, the right digit, both, or nothing at
  all (an empty mask);
* **where the boundary is**: a grader traces a digit tightly (its pixels
  > 0.75) or loosely (> 0.25).

The candidates are functions of the image, so p(y | x) is known exactly: a
model that samples it is the ideal, and its expected GED
(`metrics.expected_ged_of_distribution`, with the graders drawn here) is the
floor every model is judged against. `AmbiguitySpec.ambiguity` says how the
probabilities depend on the image:

* `constant`: the same for every image, `structure_probabilities` for the
  structure and `loose_probability` for a loose trace, so the best
  distribution that ignores x is the truth itself;
* `image_dependent`: set by the two digits' classes, which the image shows,
  so a model must read the digits to match the graders. Each grader marks
  each digit independently, with a probability `MARK_PROBABILITY` of its
  class: even digits almost always (0.9), 5, 7 and 9 half the time (0.5:
  the graders disagree), 1 and 3 rarely (0.1); so P(left) = q_l (1 - q_r),
  P(right) = (1 - q_l) q_r, P(both) = q_l q_r, P(nothing) = (1 - q_l)(1 - q_r).
  A marked digit is traced loosely with the probability `LOOSE_PROBABILITY`
  of its class: 0.8 for the thin 1 and 7, 0.3 for the others ("both": the
  mean of the two). On the 5,000 test images the mean of these
  distributions (the best one that ignores x) is 0.43 away in total
  variation from an image's own, on average, and costs 0.50 nats per
  grader's mask more than the truth, 1.89 against 1.39
  (`evaluators.ambiguity`'s `marginal_*` figures).

Everything is drawn from `numpy.random.default_rng((seed, split index))` in
the same order in both settings, over the TFDS `mnist` splits (validation:
the last `validation_size` images of TFDS train), so a split is the same on
every machine and run; digit pairs are (i, i + n/2) within a split.

Arrays, the segmentation interface of `cvae_jax.data`:
  image          float32 [N, size, size, 1] in [0, 1]
  masks          float32 [N, G, size, size] in {0, 1}, the graders' masks
  candidates     bool    [N, K, size, size], the masks a grader can give
  probabilities  float32 [N, K], their probabilities (each row sums to 1)
"""

import dataclasses
from pathlib import Path

import numpy as np

from cvae_jax.data import mnist
from cvae_jax.errors import ConfigError

__all__ = ["MNIST_SIDE", "SPLITS", "CANDIDATE_NAMES", "AMBIGUITIES",
           "MARK_PROBABILITY", "LOOSE_PROBABILITY", "AmbiguitySpec",
           "image_dependent_probabilities", "shrink_digits",
           "draw_ambiguous_set", "load_ambiguous_splits", "example_grid"]

MNIST_SIDE = 28
SPLITS = ("train", "validation", "test")
TIGHT, LOOSE = 0.75, 0.25  # Grey-level thresholds of the two boundary styles.
CANDIDATE_NAMES = ("left tight", "left loose", "right tight", "right loose",
                   "both tight", "both loose", "nothing")
_GAP = (1, 3)  # Columns of background between the two digits' ink, inclusive.
AMBIGUITIES = ("constant", "image_dependent")
# ambiguity=image_dependent, by digit class 0-9: how likely a grader marks
# the digit, and traces it loosely (see the module docstring).
MARK_PROBABILITY = (0.9, 0.1, 0.9, 0.1, 0.9, 0.5, 0.9, 0.5, 0.9, 0.5)
LOOSE_PROBABILITY = (0.3, 0.8, 0.3, 0.3, 0.3, 0.3, 0.3, 0.8, 0.3, 0.3)


@dataclasses.dataclass(frozen=True)
class AmbiguitySpec:
  """How images and graders are drawn; every field is a config value."""
  size: int = 32
  digit_size: int = 14
  num_graders: int = 4
  # ambiguity=constant (image_dependent: the class tables above): P(left),
  # P(right), P(both), P(nothing), then P(a loose trace).
  structure_probabilities: tuple = (0.35, 0.25, 0.2, 0.2)
  loose_probability: float = 0.5
  ambiguity: str = "constant"  # One of AMBIGUITIES.

  def check(self) -> None:
    """Raises ConfigError naming the field for impossible values."""
    if self.ambiguity not in AMBIGUITIES:
      raise ConfigError(f"data.ambiguity must be one of {', '.join(AMBIGUITIES)}, "
                        f"got {self.ambiguity!r}; set --config.data.ambiguity")
    if not 4 <= self.digit_size <= MNIST_SIDE:
      raise ConfigError(f"data.digit_size must be in 4..{MNIST_SIDE}, got "
                        f"{self.digit_size}; set --config.data.digit_size")
    if self.size < 2 * self.digit_size + _GAP[1]:
      raise ConfigError(
          f"image_size={self.size} cannot hold two {self.digit_size}-px digits "
          f"side by side; set --config.image_size to at least "
          f"{2 * self.digit_size + _GAP[1]} or lower --config.data.digit_size")
    if not isinstance(self.num_graders, int) or self.num_graders < 1:
      raise ConfigError(f"data.num_graders must be a positive integer, got "
                        f"{self.num_graders!r}; set --config.data.num_graders")
    p = np.asarray(self.structure_probabilities, float)
    if p.shape != (4,) or np.any(p < 0) or abs(p.sum() - 1) > 1e-6:
      raise ConfigError(
          "data.structure_probabilities must be 4 non-negative numbers "
          "(left, right, both, nothing) summing to 1, got "
          f"{tuple(self.structure_probabilities)}; set "
          "--config.data.structure_probabilities")
    if not 0 <= self.loose_probability <= 1:
      raise ConfigError(f"data.loose_probability must be in [0, 1], got "
                        f"{self.loose_probability}; set "
                        "--config.data.loose_probability")

  def candidate_probabilities(self) -> np.ndarray:
    """[K] probabilities of the masks in CANDIDATE_NAMES' order
    (ambiguity=constant: every image's)."""
    left, right, both, nothing = self.structure_probabilities
    boundary = np.array([1 - self.loose_probability, self.loose_probability])
    return np.concatenate([left * boundary, right * boundary, both * boundary,
                           [nothing]]).astype(np.float32)


def image_dependent_probabilities(left_labels: np.ndarray,
                                  right_labels: np.ndarray) -> np.ndarray:
  """[N, K] float32 probabilities of the masks in CANDIDATE_NAMES' order for
  ambiguity=image_dependent, from the [N] int classes of the left and right
  digits (`MARK_PROBABILITY`, `LOOSE_PROBABILITY`; module docstring)."""
  mark, loose = np.asarray(MARK_PROBABILITY), np.asarray(LOOSE_PROBABILITY)
  q_left, q_right = mark[left_labels], mark[right_labels]
  loose_left, loose_right = loose[left_labels], loose[right_labels]
  loose_both = (loose_left + loose_right) / 2
  left, right = q_left * (1 - q_right), (1 - q_left) * q_right
  both, nothing = q_left * q_right, (1 - q_left) * (1 - q_right)
  return np.stack([left * (1 - loose_left), left * loose_left,
                   right * (1 - loose_right), right * loose_right,
                   both * (1 - loose_both), both * loose_both, nothing],
                  axis=-1).astype(np.float32)


def _area_resize_matrix(out_size: int, in_size: int) -> np.ndarray:
  """[out, in] weights averaging each output pixel's interval of the input."""
  edges = np.linspace(0, in_size, out_size + 1)
  weights = np.zeros((out_size, in_size))
  for o in range(out_size):
    for i in range(in_size):
      weights[o, i] = max(0.0, min(edges[o + 1], i + 1) - max(edges[o], i))
  return weights / weights.sum(axis=1, keepdims=True)


def shrink_digits(digits: np.ndarray, side: int) -> np.ndarray:
  """[N, 28, 28] -> [N, side, side] by area averaging, rescaled so each digit's
  brightest pixel stays as bright as before."""
  resize = _area_resize_matrix(side, digits.shape[-1])
  small = np.einsum("oi,nij,pj->nop", resize, digits, resize)
  scale = digits.max(axis=(1, 2)) / np.maximum(small.max(axis=(1, 2)), 1e-6)
  return np.clip(small * scale[:, None, None], 0.0, 1.0).astype(np.float32)


def _ink_columns(digit: np.ndarray) -> tuple[int, int]:
  """First and last column holding a pixel above the loose threshold."""
  columns = np.flatnonzero((digit > LOOSE).any(axis=0))
  return (int(columns[0]), int(columns[-1])) if len(columns) else (0, 0)


def draw_ambiguous_set(left_digits: np.ndarray, right_digits: np.ndarray,
                       spec: AmbiguitySpec, rng: np.random.Generator,
                       left_labels: np.ndarray | None = None,
                       right_labels: np.ndarray | None = None
                       ) -> dict[str, np.ndarray]:
  """Images from pairs of [N, 28, 28] digits in [0, 1], with their graders;
  returns the arrays of the module docstring. The digits' [N] int classes
  are read by ambiguity=image_dependent only (ValueError without them)."""
  spec.check()
  if spec.ambiguity == "image_dependent" and (left_labels is None
                                              or right_labels is None):
    raise ValueError("ambiguity='image_dependent' needs the digits' classes: "
                     "pass left_labels and right_labels")
  n, s, d = len(left_digits), spec.size, spec.digit_size
  left_small = shrink_digits(left_digits, d)
  right_small = shrink_digits(right_digits, d)
  left_layer = np.zeros((n, s, s), np.float32)
  right_layer = np.zeros((n, s, s), np.float32)
  for i in range(n):
    _, left_last = _ink_columns(left_small[i])
    right_first, _ = _ink_columns(right_small[i])
    # The right digit's ink begins `gap` columns after the left's ends (their
    # boxes may overlap, their strokes never); both fit: right_col <= s - d.
    left_col = rng.integers(0, s - 2 * d - _GAP[1] + 1)
    gap = rng.integers(_GAP[0], _GAP[1] + 1)
    right_col = left_col + left_last + 1 + gap - right_first
    rows = rng.integers(0, s - d + 1, 2)
    left_layer[i, rows[0]:rows[0] + d, left_col:left_col + d] = left_small[i]
    right_layer[i, rows[1]:rows[1] + d, right_col:right_col + d] = right_small[i]
  image = np.maximum(left_layer, right_layer)
  parts = {"left": left_layer, "right": right_layer, "both": image}
  candidates = np.stack(
      [parts[name.split()[0]] > (TIGHT if name.endswith("tight") else LOOSE)
       for name in CANDIDATE_NAMES[:-1]] + [np.zeros((n, s, s), bool)], axis=1)
  if spec.ambiguity == "image_dependent":
    probabilities = image_dependent_probabilities(left_labels, right_labels)
  else:
    probabilities = np.broadcast_to(spec.candidate_probabilities(),
                                    (n, len(CANDIDATE_NAMES))).copy()
  choices = np.stack([rng.choice(len(CANDIDATE_NAMES), spec.num_graders,
                                 p=probabilities[i]) for i in range(n)])
  masks = np.take_along_axis(candidates, choices[:, :, None, None], axis=1)
  return {"image": image[..., None], "masks": masks.astype(np.float32),
          "candidates": candidates, "probabilities": probabilities}


def load_ambiguous_splits(data_dir: str | Path, spec: AmbiguitySpec,
                          validation_size: int, seed: int,
                          max_examples: dict[str, int] | None = None
                          ) -> dict[str, dict[str, np.ndarray]]:
  """{"train", "validation", "test"} -> `draw_ambiguous_set` arrays.

  Args:
    max_examples: split name -> keep only its first n images (0/None: all;
      each image uses two MNIST digits).
  """
  spec.check()
  tfds_splits = mnist.held_out_splits(data_dir, validation_size)
  result = {}
  for index, name in enumerate(SPLITS):
    arrays = mnist.load_mnist_arrays(data_dir, tfds_splits[name])
    digits = arrays["target"].reshape(-1, MNIST_SIDE, MNIST_SIDE)
    labels = arrays["condition"]
    half = len(digits) // 2
    count = min((max_examples or {}).get(name) or half, half)
    result[name] = draw_ambiguous_set(
        digits[:count], digits[half:half + count], spec,
        np.random.default_rng((seed, index)), labels[:count],
        labels[half:half + count])
  return result


def example_grid(data_dir: str | Path, count: int = 8, seed: int = 0,
                 spec: AmbiguitySpec = AmbiguitySpec()) -> np.ndarray:
  """[1 + K, count, size, size]: test images, then each image's K candidate
  masks, shaded by their probability (the likeliest white)."""
  mnist_arrays = mnist.load_mnist_arrays(data_dir, f"test[:{2 * count}]")
  digits = mnist_arrays["target"].reshape(-1, MNIST_SIDE, MNIST_SIDE)
  labels = mnist_arrays["condition"]
  arrays = draw_ambiguous_set(digits[:count], digits[count:], spec,
                              np.random.default_rng((seed, len(SPLITS) - 1)),
                              labels[:count], labels[count:])
  weight = arrays["probabilities"] / arrays["probabilities"].max()
  shaded = arrays["candidates"] * weight[:, :, None, None]
  return np.concatenate([arrays["image"][None, ..., 0],
                         np.moveaxis(shaded, 1, 0)])


if __name__ == "__main__":
  mnist.write_example_figure(example_grid, "Draws test images of the ambiguous set and their graders' distribution.", "docs/ambiguous_examples.png")
