"""cvae_jax.evaluators.segmentation and .boxes on their own, with predictors
written here: one that predicts the truth scores perfectly, one that
predicts nothing (or a box far away) scores what the definitions say."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from cvae_jax.distributions import Bernoulli, DiagonalGaussian
from cvae_jax.evaluators import boxes, segmentation

from helpers import box_arrays, segmentation_arrays


@dataclasses.dataclass(frozen=True)
class FixedMasks:
  """Predicts logits read from the condition: [B, H, W, 2], channel 1."""
  point_name = "exact"
  log_likelihood_label = "exact"

  def point(self, params, condition):
    return Bernoulli(condition[..., 1].reshape(len(condition), -1))

  def samples(self, params, condition, rng, num_samples):
    logits = self.point(params, condition).logits
    # Sample s is the truth only from s = 2 on: best-of-1 misses, best-of-3 hits.
    wrong = jnp.full_like(logits, -10.0)
    return Bernoulli(jnp.stack([wrong, wrong] + [logits] * (num_samples - 2)))


def _segmentation_case(logit_sign: float):
  arrays = segmentation_arrays(6)
  masks = arrays["masks"][:, 0]
  logits = logit_sign * 10.0 * (2 * masks - 1)
  condition = np.stack([arrays["image"][..., 0], logits], -1)
  test = {"image": condition, "masks": arrays["masks"]}
  batch_of = lambda a: {"condition": a["image"],
                        "target": a["masks"][:, 0].reshape(len(a["masks"]), -1)}
  return test, batch_of


def test_point_and_best_of_of_the_truth_and_of_its_opposite():
  rng = jax.random.PRNGKey(0)
  test, batch_of = _segmentation_case(+1.0)
  predictor = FixedMasks()
  point = segmentation.make_point(predictor, batch_of, 4).run(None, test, rng, None)
  np.testing.assert_allclose(point["pixel_error"], 0.0)
  np.testing.assert_allclose(point["iou"], 1.0)
  np.testing.assert_allclose(  # 256 pixels of -log sigmoid(10) each.
      point["nll_exact"], 256 * np.log1p(np.exp(-10.0)), rtol=1e-2)
  best = segmentation.make_best_of(predictor, batch_of, 4, (1, 2, 3)).run(
      None, test, rng, None)
  np.testing.assert_allclose(best["best_of_3_iou"], 1.0)
  assert np.all(best["best_of_1_iou"] == best["best_of_2_iou"])
  assert np.all(best["best_of_1_iou"] < 1.0)

  opposite, batch_of = _segmentation_case(-1.0)
  point = segmentation.make_point(predictor, batch_of, 4).run(None, opposite, rng, None)
  np.testing.assert_allclose(point["pixel_error"], 1.0)
  np.testing.assert_allclose(point["iou"], 0.0)


@dataclasses.dataclass(frozen=True)
class BoxesFromCondition:
  """Predicts, for sample s, the canvas's valid box s (mod M), or a fixed box
  far from every digit."""
  far: bool = False

  def samples(self, params, condition, rng, num_samples):
    boxes_, valid = condition["boxes"], condition["valid"]
    order = jnp.argsort(~valid, axis=-1)  # Valid boxes first.
    count = jnp.sum(valid, -1)
    index = jnp.arange(num_samples)[:, None] % count[None]  # [K, B]
    picked = jnp.take_along_axis(order[None], index[..., None], axis=-1)[..., 0]
    means = jnp.take_along_axis(boxes_[None], picked[..., None, None], axis=2)[:, :, 0]
    if self.far:
      means = jnp.broadcast_to(jnp.array([2.0, 2.0, 0.01, 0.01]), means.shape)
    return DiagonalGaussian(means, jnp.zeros_like(means))


def test_boxes_of_the_valid_set_and_far_away():
  arrays = box_arrays(6)
  valid = arrays["labels"] >= 0
  batch_of = lambda a: ({"condition": {"boxes": a["boxes"], "valid": a["labels"] >= 0},
                         "target": a["boxes"][:, 0]}, a["labels"] >= 0)
  k = int(valid.sum(-1).max())
  rng = jax.random.PRNGKey(1)
  figures = boxes.make_boxes(BoxesFromCondition(), batch_of, 3, num_samples=k,
                             best_of=(1, k)).run(None, arrays, rng, None)
  np.testing.assert_allclose(figures[f"best_of_{k}_iou"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(figures[f"coverage_at_{k}"], 1.0)
  np.testing.assert_allclose(figures[f"precision_at_{k}"], 1.0)
  np.testing.assert_array_equal(figures["valid_boxes"], valid.sum(-1))
  far = boxes.make_boxes(BoxesFromCondition(far=True), batch_of, 3, num_samples=k,
                         best_of=(1, k)).run(None, arrays, rng, None)
  for name in (f"best_of_{k}_iou", f"coverage_at_{k}", f"precision_at_{k}"):
    np.testing.assert_allclose(far[name], 0.0, atol=1e-6)
