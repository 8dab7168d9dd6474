"""Segmentation (Sohn et al. 2015): figures of one mask per image, for any
model through its `cvae_jax.predictors.Predictor`.

Data: {"image" [N, H, W, C], "masks" [N, G, H, W]}; the first grader's mask
is the truth. `batch_of(arrays)` turns a batch of them into the model's
{"condition", "target", ...} batch, and `full_resolution` turns a target or a
prediction's logits into [..., H, W] (default: `to_square`, for flat pixels);
a pixel is predicted where its logit is > 0 (p > 0.5).

Evaluators (per image):
  point    pixel_error and iou (foreground IoU) of the point prediction, and
           its -log p(y | x) as nll_<predictor.point_name> (nll_exact for a
           deterministic net, nll_prior_mean for a CVAE at z = E[z | x]);
  best_of  best_of_<S>_iou: the best IoU among the first S of max(best_of)
           sampled predictions, for S in `best_of`.
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from cvae_jax import estimators, metrics
from cvae_jax.evaluators.base import Evaluator, measured
from cvae_jax.predictors import Predictor

__all__ = ["to_square", "first_grader", "make_point", "make_best_of"]


def to_square(values: jax.Array) -> jax.Array:
  """[..., H * W] -> [..., H, W] for square maps."""
  side = int(round(values.shape[-1] ** 0.5))
  return values.reshape(*values.shape[:-1], side, side)


def first_grader(test: dict) -> dict:
  """The image and its first grader's mask, [N, 1, H, W]."""
  return {"image": test["image"], "masks": test["masks"][:, :1]}


def make_point(predictor: Predictor, batch_of: Callable[[dict], dict],
               batch_size: int,
               full_resolution: Callable = to_square) -> Evaluator:
  """Pixel error, IoU and -log p(y|x) of the point prediction; see above."""
  nll = f"nll_{predictor.point_name}"

  def figures(params, arrays, rng):
    del rng
    batch = batch_of(arrays)
    prediction = predictor.point(params, batch["condition"])
    mask = full_resolution(prediction.logits) > 0
    truth = full_resolution(batch["target"]) > 0.5
    return jnp.stack([metrics.pixel_error(mask, truth),
                      metrics.intersection_over_union(mask, truth),
                      estimators.batch_log_likelihood(prediction, batch)], -1)

  def run(params, test, rng, workdir):
    del workdir
    values = measured(f"point prediction: pixel error, IoU, {nll}", "images",
                      figures, params, first_grader(test), rng, batch_size)
    return {"pixel_error": values[:, 0], "iou": values[:, 1], nll: -values[:, 2]}
  return Evaluator("point", run)


def make_best_of(predictor: Predictor, batch_of: Callable[[dict], dict],
                 batch_size: int, best_of: Sequence[int] = (1, 10, 100),
                 full_resolution: Callable = to_square) -> Evaluator:
  """Best-of-S IoU of sampled predictions; see above."""
  counts = tuple(best_of)

  def figures(params, arrays, rng):
    batch = batch_of(arrays)
    # All samples in one call: XLA:CPU runs convolutions in loops slowly.
    samples = predictor.samples(params, batch["condition"], rng, max(counts))
    masks = jnp.moveaxis(full_resolution(samples.logits) > 0, 0, 1)  # [B, S, H, W]
    truth = full_resolution(batch["target"]) > 0.5
    return jnp.stack([metrics.best_of_samples_iou(masks[:, :s], truth)
                      for s in counts], -1)

  def run(params, test, rng, workdir):
    del workdir
    values = measured(f"best-of-S IoU over {max(counts)} sampled predictions",
                      "images", figures, params, first_grader(test), rng, batch_size)
    return {f"best_of_{s}_iou": values[:, i] for i, s in enumerate(counts)}
  return Evaluator("best_of", run)
