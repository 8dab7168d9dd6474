"""A 2-D multimodal regression whose conditional density is known exactly.

x ~ U(-1, 1); given x, y in R^2 is drawn from an equal-weight mixture of
K(x) isotropic Gaussians (std `STD`): K = 2 for x < -1/3, 3 for
-1/3 <= x < 1/3, 4 for x >= 1/3. Mode k of K(x) sits on a circle of radius
1 + x / 2 at angle 2 pi k / 4 + pi x / 2, so the modes move, and appear, as x
grows. `log_density(x, y)` is the exact log p(y | x) in nats, the figure
every estimator of the toy task is measured against.

Generated in numpy from a seed (no download, no TensorFlow).
"""

import numpy as np

__all__ = ["STD", "MAX_MODES", "num_modes", "mode_means", "log_density",
           "sample", "splits"]

STD = 0.1
MAX_MODES = 4


def num_modes(x: np.ndarray) -> np.ndarray:
  """K(x) in {2, 3, 4}, int [N]."""
  return np.where(x < -1 / 3, 2, np.where(x < 1 / 3, 3, 4))


def mode_means(x: np.ndarray) -> np.ndarray:
  """[N, MAX_MODES, 2] centres of the modes (only the first K(x) are used)."""
  x = np.asarray(x, np.float64)[..., None]
  angle = 2 * np.pi * np.arange(MAX_MODES) / MAX_MODES + np.pi * x / 2
  radius = 1 + x / 2
  return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)


def log_density(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Exact log p(y | x), nats [N]; x [N], y [N, 2]."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  squared = np.sum((y[:, None, :] - mode_means(x)) ** 2, axis=-1)  # [N, M]
  log_normal = -squared / (2 * STD**2) - np.log(2 * np.pi * STD**2)
  k = num_modes(x)
  used = np.arange(MAX_MODES)[None] < k[:, None]
  log_normal = np.where(used, log_normal, -np.inf)
  top = np.max(log_normal, axis=1, keepdims=True)
  return (top[:, 0] + np.log(np.sum(np.exp(log_normal - top), axis=1))
          - np.log(k))


def sample(rng: np.random.Generator, num: int) -> dict[str, np.ndarray]:
  """{"x": [num, 1], "y": [num, 2]} float32."""
  x = rng.uniform(-1, 1, num)
  mode = (rng.uniform(0, 1, num) * num_modes(x)).astype(np.int64)
  centre = mode_means(x)[np.arange(num), mode]
  y = centre + STD * rng.standard_normal((num, 2))
  return {"x": x[:, None].astype(np.float32), "y": y.astype(np.float32)}


def splits(seed: int, train: int, validation: int, test: int) -> dict:
  """{"train", "validation", "test"} arrays, each drawn from its own stream
  of `seed` (a split's examples do not change with the others' sizes)."""
  streams = np.random.SeedSequence(seed).spawn(3)
  return {name: sample(np.random.default_rng(stream), size)
          for name, stream, size in zip(("train", "validation", "test"), streams,
                                        (train, validation, test))}
