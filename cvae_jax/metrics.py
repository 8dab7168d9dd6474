"""Segmentation metrics: plain jittable functions of binary masks.

Masks are [..., H, W] arrays, True / 1 on the foreground; every function
returns one value per leading index.

Convention for empty masks: the IoU of two empty masks is 1 (nothing to find,
nothing found: a perfect answer, and the distance 1 - IoU = 0 that the
ambiguous-segmentation literature uses); an empty prediction of a non-empty
truth, or the reverse, has IoU 0.
"""

import jax
import jax.numpy as jnp


def intersection_over_union(prediction: jax.Array, truth: jax.Array) -> jax.Array:
  """Foreground IoU |P & T| / |P | T| of binary masks; [...] in [0, 1]."""
  prediction, truth = prediction.astype(bool), truth.astype(bool)
  intersection = jnp.sum(prediction & truth, axis=(-2, -1))
  union = jnp.sum(prediction | truth, axis=(-2, -1))
  return jnp.where(union == 0, 1.0, intersection / jnp.maximum(union, 1))


def pixel_error(prediction: jax.Array, truth: jax.Array) -> jax.Array:
  """Share of pixels where the binary masks differ; [...] in [0, 1]."""
  wrong = prediction.astype(bool) != truth.astype(bool)
  return jnp.mean(wrong, axis=(-2, -1))


def best_of_samples_iou(samples: jax.Array, truth: jax.Array) -> jax.Array:
  """The oracle over S samples: max_s IoU(samples[s], truth).

  Args:
    samples: [S, ..., H, W] binary masks.
    truth: [..., H, W].

  Returns:
    [...] best IoU.
  """
  return jnp.max(intersection_over_union(samples, truth[None]), axis=0)
