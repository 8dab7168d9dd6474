"""Bounding boxes with several right answers: figures of K predicted boxes
per input, for any model through its `cvae_jax.predictors.Predictor`.

A predicted box is the mean of a sampled prediction ([..., 4], cx, cy, w, h
normalised by the image side): the regressor's one Gaussian K times, a
mixture density network's drawn component, a CVAE's p(y | x, z) at
z ~ p(z | x). `batch_of(arrays)` gives the model's batch and the valid boxes
of each input ([B, M] bool over arrays["boxes"] [B, M, 4]).

Evaluator "boxes" (per input): best_of_<k>_iou for k in `best_of` (the best
IoU of the first k boxes with any valid box, `box_metrics.best_of_k_iou`),
coverage_at_<K> (the share of valid boxes that some box hits at IoU >= 0.5)
and precision_at_<K> (the share of boxes that hit a valid one), valid_boxes.
Evaluator "pictures": boxes.png (`make_pictures`).
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cvae_jax import box_metrics, distributions, plotting
from cvae_jax.evaluators.base import Evaluator, measured
from cvae_jax.evaluators.pictures import picture
from cvae_jax.predictors import Predictor

__all__ = ["sample_boxes", "make_boxes", "make_pictures"]


def sample_boxes(predictor: Predictor, params, condition, rng: jax.Array,
                 num_samples: int) -> jax.Array:
  """[K, B, 4] predicted boxes: the means of K sampled predictions."""
  return distributions.mean_of(predictor.samples(params, condition, rng,
                                                 num_samples))


def make_boxes(predictor: Predictor, batch_of: Callable[[dict], tuple],
               batch_size: int, num_samples: int = 20,
               best_of: Sequence[int] = (1, 5, 20)) -> Evaluator:
  """Best-of-k IoU, coverage and precision of K = `num_samples` boxes."""
  counts, k = tuple(best_of), num_samples

  def figures(params, arrays, rng):
    batch, valid = batch_of(arrays)
    boxes = sample_boxes(predictor, params, batch["condition"], rng, k)
    return jnp.stack(
        [box_metrics.best_of_k_iou(boxes[:s], arrays["boxes"], valid) for s in counts]
        + [box_metrics.coverage(boxes, arrays["boxes"], valid),
           box_metrics.precision(boxes, arrays["boxes"], valid),
           jnp.sum(valid, axis=-1).astype(jnp.float32)], -1)

  def run(params, test, rng, workdir):
    del workdir
    values = measured(f"best-of-k IoU, coverage, precision, K={k}", "canvases",
                      figures, params, test, rng, batch_size)
    result = {f"best_of_{s}_iou": values[:, i] for i, s in enumerate(counts)}
    result.update({f"coverage_at_{k}": values[:, -3],
                   f"precision_at_{k}": values[:, -2], "valid_boxes": values[:, -1]})
    return result
  return Evaluator("boxes", run)


def make_pictures(predictor: Predictor, batch_of: Callable[[dict], tuple],
                  num_images: int = 8, num_samples: int = 20,
                  figure_class: int = -1) -> Evaluator:
  """boxes.png: the first `num_images` test inputs, their valid boxes and
  `num_samples` predicted boxes each (`plotting.save_box_panel`). With
  `figure_class` >= 0 every input is asked for that class (condition["class"])
  and the valid boxes are that class's."""
  def draw(params, test, rng):
    arrays = {k: jnp.asarray(v[:num_images]) for k, v in test.items()}
    batch, valid = batch_of(arrays)
    if figure_class >= 0:
      condition = batch["condition"]
      batch["condition"] = {**condition,
                            "class": jnp.full_like(condition["class"], figure_class)}
      valid = arrays["labels"] == figure_class
    samples = sample_boxes(predictor, params, batch["condition"], rng, num_samples)
    return {"image": np.asarray(arrays["image"]), "boxes": np.asarray(arrays["boxes"]),
            "valid": np.asarray(valid), "samples": np.asarray(samples)}
  return picture("pictures", draw, "boxes.png", save=plotting.save_box_panel)
