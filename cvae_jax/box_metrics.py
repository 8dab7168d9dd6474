"""Bounding-box metrics: jittable functions of (cx, cy, w, h) boxes.

Boxes are [..., 4] arrays (centre x, centre y, width, height), in any unit
shared by all of them (the project uses coordinates normalised by the image
side). A set of valid boxes is [batch, M, 4] with a boolean [batch, M] mask
(padding rows are False); K samples are [K, batch, 4]. A match is IoU >= 0.5
(`threshold`), as in Pascal VOC.
"""

import jax
import jax.numpy as jnp

__all__ = ["MATCH_IOU", "box_corners", "box_iou", "pairwise_iou",
           "best_of_k_iou", "coverage", "precision"]

MATCH_IOU = 0.5


def box_corners(boxes: jax.Array) -> jax.Array:
  """[..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1)."""
  centre, size = boxes[..., :2], boxes[..., 2:]
  return jnp.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Intersection over union of boxes a and b, broadcasting their leading axes.

  Boxes that only touch, or a box of zero area, have IoU 0 (nothing
  intersects); two zero-area boxes have IoU 0 too (0 / 0 is taken as 0).
  Negative widths or heights count as 0.

  Returns:
    [...] IoU in [0, 1].
  """
  a, b = box_corners(a), box_corners(b)
  overlap = jnp.clip(jnp.minimum(a[..., 2:], b[..., 2:])
                     - jnp.maximum(a[..., :2], b[..., :2]), 0.0)
  intersection = overlap[..., 0] * overlap[..., 1]
  area = lambda c: jnp.prod(jnp.clip(c[..., 2:] - c[..., :2], 0.0), axis=-1)
  union = area(a) + area(b) - intersection
  return jnp.where(union > 0, intersection / jnp.where(union > 0, union, 1.0), 0.0)


def pairwise_iou(samples: jax.Array, valid_boxes: jax.Array,
                 valid_mask: jax.Array) -> jax.Array:
  """IoU of every sample with every valid box; padding boxes give -1.

  Args:
    samples: [K, batch, 4].
    valid_boxes: [batch, M, 4].
    valid_mask: [batch, M] bool.

  Returns:
    [K, batch, M].
  """
  iou = box_iou(samples[:, :, None, :], valid_boxes[None])
  return jnp.where(valid_mask[None], iou, -1.0)


def best_of_k_iou(samples: jax.Array, valid_boxes: jax.Array,
                  valid_mask: jax.Array) -> jax.Array:
  """Best IoU of any of the K samples with any valid box; [batch].

  (The first k samples of a [K, ...] array give best-of-k.) 0 when the
  valid set is empty.
  """
  best = jnp.max(pairwise_iou(samples, valid_boxes, valid_mask), axis=(0, 2))
  return jnp.maximum(best, 0.0)


def coverage(samples: jax.Array, valid_boxes: jax.Array, valid_mask: jax.Array,
             threshold: float = MATCH_IOU) -> jax.Array:
  """Share of the valid boxes matched (IoU >= threshold) by at least one of
  the K samples; [batch] in [0, 1] (0 for an empty valid set)."""
  matched = jnp.max(pairwise_iou(samples, valid_boxes, valid_mask), axis=0) >= threshold
  count = jnp.sum(valid_mask, axis=-1)
  return jnp.sum(matched & valid_mask, axis=-1) / jnp.maximum(count, 1)


def precision(samples: jax.Array, valid_boxes: jax.Array, valid_mask: jax.Array,
              threshold: float = MATCH_IOU) -> jax.Array:
  """Share of the K samples that match (IoU >= threshold) some valid box;
  [batch] in [0, 1]."""
  best = jnp.max(pairwise_iou(samples, valid_boxes, valid_mask), axis=2)  # [K, B]
  return jnp.mean(best >= threshold, axis=0)
