"""What a training step does to segmentation-interface arrays ({"image"
[B, H, W, C], "masks" [B, G, H, W]}): pick one grader's mask per example and
augment, inside jit."""

import jax
import jax.numpy as jnp

__all__ = ["augment", "pick_grader"]


def augment(images: jax.Array, masks: jax.Array, rng: jax.Array,
            omission_rate: float, flip: bool) -> tuple[jax.Array, jax.Array]:
  """Training-time input omission noise and horizontal flips.

  Args:
    images: [B, H, W, C]; each pixel (all channels) is set to 0 with
      probability `omission_rate` (Sohn et al.'s input omission noise).
    masks: [B, H, W]; flipped with its image.
  """
  omit_rng, flip_rng = jax.random.split(rng)
  if omission_rate:
    keep = jax.random.bernoulli(omit_rng, 1.0 - omission_rate, images.shape[:-1])
    images = images * keep[..., None]
  if flip:
    flips = jax.random.bernoulli(flip_rng, 0.5, images.shape[:1])
    images = jnp.where(flips[:, None, None, None], images[:, :, ::-1], images)
    masks = jnp.where(flips[:, None, None], masks[:, :, ::-1], masks)
  return images, masks


def pick_grader(masks: jax.Array, rng: jax.Array | None) -> jax.Array:
  """[B, G, H, W] -> [B, H, W]: one grader's mask per example, at random
  (rng) or the first (rng None)."""
  if rng is None or masks.shape[1] == 1:
    return masks[:, 0]
  choice = jax.random.randint(rng, masks.shape[:1], 0, masks.shape[1])
  return jnp.take_along_axis(masks, choice[:, None, None, None], axis=1)[:, 0]
