"""Structured-output segmentation (Sohn, Lee & Yan 2015): a baseline CNN, the
conv CVAE, the GSNN and the hybrid objective.

Data: the offline `mnist_segmentation` set or a TFDS one (`caltech_birds2011`,
`oxford_iiit_pet`), {"image" [N, H, W, C], "masks" [N, G, H, W]}. Training
batches are augmented inside jit (input omission noise, flips). The
objectives' batch: condition x [B, H, W, C]; target y, a flat mask pyramid
[B, pyramid_size]; target_mask, its weights (full resolution 1, coarser
scales `multiscale_weight` in training, 0 in evaluation). Test figures: the
`cvae_jax.evaluators.segmentation` ones, -log p(y | x) per image, panel.png.
"""

from pathlib import Path

import jax
import ml_collections
import numpy as np

from cvae_jax import evaluators, objectives, predictors, runner
from cvae_jax.data import augmentation, splits
from cvae_jax.evaluators import pictures, segmentation as segmentation_evaluators
from cvae_jax.errors import (ConfigError, require_chunks,
                             require_choice, require_positive_ints, require_range,
                             require_sample_counts)
from cvae_jax.models import segmentation as seg_models

__all__ = ["TASK", "train_and_evaluate", "validate", "make_model", "EVALS"]

MODEL_KINDS = objectives.OBJECTIVES
DATASETS = ("mnist_segmentation", "caltech_birds2011", "oxford_iiit_pet")


def validate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """ConfigError / UserError for settings the task cannot work with."""
  require_choice(config, "model", MODEL_KINDS)
  require_choice(config, "dataset", DATASETS)
  require_range(config, "input_omission_rate", 0.0, 1.0, high_open=True)
  require_range(config, "hybrid_alpha", 0.0, 1.0)
  require_positive_ints(config, ("image_size", "gsnn_samples"))
  require_positive_ints(config.network, ("latent_channels", "first_stride"),
                        "network.")
  make_model(config)  # Its geometry.
  if config.dataset == "mnist_segmentation":
    splits.segmentation_canvas_spec(config).check()
  elif config.occlusion.blocks:
    raise ConfigError("occlusion applies to the offline mnist_segmentation set "
                      "only; set --config.occlusion.blocks=0")
  require_positive_ints(config.eval, (
      "batch_size", "num_samples", "chunk_size", "figure_images",
      "figure_samples"), "eval.")
  require_chunks(config.eval, ("num_samples",))
  require_sample_counts(config.eval, "best_of", "num_samples")


def make_model(config: ml_collections.ConfigDict):
  """BaselineCNN for model="baseline", else SegmentationCVAE."""
  baseline, cvae = seg_models.from_network_config(
      config.network, config.image_size, config.multiscale_levels)
  return baseline if config.model == "baseline" else cvae


def objective_batch(config, images: jax.Array, masks: jax.Array,
                    training: bool) -> dict:
  """{condition, target (mask pyramid), target_mask (pyramid weights)}."""
  size, levels = config.image_size, config.multiscale_levels
  weight = config.multiscale_weight if training else 0.0
  return {"condition": images,
          "target": seg_models.mask_pyramid(masks.astype(images.dtype), levels),
          "target_mask": seg_models.pyramid_weights(size, size, levels, weight)}


def objective(config, model):
  """(params, batch, rng, kl_weight) -> [B] nats: what `config.model` minimises.

  The CVAE family trains its baseline jointly: the baseline's own
  -log p(y | x) is added, so its guess y_hat (which the prior sees) stays a
  segmentation; it also gets the gradient of the summed output. One forward
  pass computes the baseline, the encoders and the decoder once each.
  """
  return objectives.per_example_objective(
      config.model, model, config.hybrid_alpha, config.gsnn_samples,
      joint_baseline=isinstance(model, seg_models.SegmentationCVAE))


def training_batch(config, arrays: dict, rng: jax.Array) -> tuple[dict, jax.Array]:
  """One grader per image, augmented, every scale weighted; the objective's key."""
  grader_rng, augment_rng, objective_rng = jax.random.split(rng, 3)
  images, masks = augmentation.augment(
      arrays["image"], augmentation.pick_grader(arrays["masks"], grader_rng),
      augment_rng, config.input_omission_rate, config.horizontal_flip)
  return objective_batch(config, images, masks, training=True), objective_rng


def evaluation_batch(config, arrays: dict) -> dict:
  """The first grader, full resolution only, no augmentation."""
  return objective_batch(config, arrays["image"], arrays["masks"][:, 0],
                         training=False)


def run_identity(config) -> dict:
  """Settings the checkpoints depend on beyond their shapes."""
  identity = {k: config[k] for k in (
      "model", "dataset", "image_size", "validation_size", "validation_fraction",
      "input_omission_rate", "horizontal_flip", "multiscale_levels",
      "multiscale_weight")}
  identity.update(data=config.data.to_dict(), occlusion=config.occlusion.to_dict(),
                  network=config.network.to_dict())
  return {**identity, **objectives.objective_settings(
      config.model, config.hybrid_alpha, config.gsnn_samples)}


# The config's default `evals`: the point prediction's figures (at z = E[z|x]
# for a CVAE), best-of-S IoU, the library's estimates (b) and (c), panel.png.
EVALS = ("point", "best_of", "prior_monte_carlo", "importance_sampled", "panel")


def task_evaluators(config, model) -> dict:
  """The segmentation evaluators for the model's predictions (a GSNN's
  recognition net is untrained: its likelihood comes from the prior), the
  library's likelihood estimates of the first grader's mask at full weight,
  and panel.png."""
  size, ev = config.image_size, config.eval
  kind = evaluators.KIND_OF_OBJECTIVE[config.model]
  predict = predictors.predictor(
      model, proposal="prior" if kind == evaluators.GSNN else "recognition",
      chunk_size=ev.chunk_size)
  batch_of = lambda arrays: evaluation_batch(config, arrays)
  full = lambda values: seg_models.full_resolution(values, size, size)
  ctx = evaluators.Context(
      config, model, kind, arrays=segmentation_evaluators.first_grader,
      batch=batch_of, names={"prior_monte_carlo": "nll_prior_monte_carlo",
                             "importance_sampled": "nll_importance_sampled"})
  return {
      **evaluators.library(ctx),
      "point": segmentation_evaluators.make_point(predict, batch_of, ev.batch_size,
                                                  full),
      "best_of": segmentation_evaluators.make_best_of(
          predict, batch_of, ev.batch_size, tuple(ev.best_of), full),
      "panel": pictures.make_baseline_and_samples(
          model, "panel", "panel.png", _input_and_truth,
          lambda x, probabilities: full(probabilities),
          ev.figure_images, ev.figure_samples)}


def _input_and_truth(test: dict) -> tuple:
  """The images, and panel.png's first rows: each image in grey (occluded
  blocks mid-grey), its first grader's mask."""
  grey = test["image"].mean(axis=-1)
  if "occluded" in test:
    grey = np.where(test["occluded"], 0.5, grey)
  return test["image"], [grey, test["masks"][:, 0]]


UNITS = {"pixel_error": "share of pixels", "iou": "foreground IoU",
         "nll_*": "nats per image"}
TASK = runner.Task(
    name="segmentation", validate=validate, make_model=make_model,
    load_splits=splits.segmentation_splits,
    objective=objective, training_batch=training_batch,
    evaluation_batch=evaluation_batch,
    run_identity=run_identity,
    evaluators=task_evaluators, evals=EVALS, units=UNITS,
    header=lambda config, test: {
        "model": config.model, "dataset": config.dataset,
        "occlusion_blocks": config.occlusion.blocks,
        "input_omission_rate": config.input_omission_rate,
        "num_samples": config.eval.num_samples},
    training_keys=("image", "masks"), test_streams=4)
train_and_evaluate = TASK.train_and_evaluate
