"""Ambiguous segmentation (Kohl et al. 2018): the deterministic U-Net, Sohn
et al.'s conv CVAE, the Probabilistic U-Net, its hierarchical successors
(HPU-Net, PHiSeg), Stochastic Segmentation Networks, or a model of yours.

Data: the offline `mnist_ambiguous` set (4 graders drawn from a known
distribution, with its "candidates" and "probabilities") or `lidc`,
{"image" [N, H, W, 1], "masks" [N, G, H, W]}; each training step uses one
grader's mask per image, drawn at random. The objectives' batch: condition
the image, target the mask as flat float pixels [B, H * W].

`config.model` names a built-in model (`MODELS`) or one of yours as
"package.module:factory" (`factory(config) -> flax module`). The objective
(nats per image) follows what the model is (`objectives.model_objective`):
for a CVAE, its -ELBO with one z and beta on the KL (a hierarchical one's
summed over levels), the reconstruction over the worst `top_k_fraction` of
pixels, under GECO when `config.geco.enabled`; otherwise -log p(y | x) from
the model's predictor with `config.likelihood_samples` draws. A built-in
model's training recipe is `config.recipes.<model>`. Test figures: the
`cvae_jax.evaluators.ambiguity` ones, panel.png.
"""

from pathlib import Path

import jax
import ml_collections

from cvae_jax import objectives, predictors, runner
from cvae_jax.errors import (ConfigError, require_chunks, require_choice,
                             require_positive_ints, require_range,
                             require_sample_counts)
from cvae_jax.evaluators import ambiguity
from cvae_jax.data import augmentation, splits
from cvae_jax.models import import_model, prob_unet as models
from cvae_jax.models import ambiguous_segmentation

__all__ = ["TASK", "train_and_evaluate", "validate", "make_model", "EVALS"]

MODELS = ("unet", "prob_unet", "sohn_cvae", "hpu_net", "phiseg", "ssn")
DATASETS = ("mnist_ambiguous", "lidc")


def validate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """ConfigError / UserError for settings the task cannot work with."""
  require_choice(config, "dataset", DATASETS)
  require_positive_ints(config, ("image_size", "likelihood_samples"))
  require_range(config, "beta", 0.0, float("inf"))
  require_range(config, "top_k_fraction", 0.0, 1.0, low_open=True)
  models.check_network(config.network, config.image_size)
  model = make_model(config)  # An unknown model or its impossible geometry.
  if predictor(config, model).log_likelihood_label is None:  # Its loss.
    raise ConfigError(f"{type(model).__name__} has no latent and defines no "
                      "log_likelihood(target, condition, rng, num_samples), the "
                      "loss it trains on; add one (cvae_jax.predictors)")
  if config.dataset == "mnist_ambiguous":
    splits.ambiguity_spec(config).check()
  else:
    splits.check_lidc_settings(config)
  require_positive_ints(config.eval, (
      "batch_size", "num_samples", "chunk_size", "hungarian_samples",
      "figure_images", "figure_samples"), "eval.")
  require_chunks(config.eval, ("num_samples",))
  require_sample_counts(config.eval, "ged_samples", "num_samples")


def make_model(config):
  """The module `config.model` names (`MODELS`, each built from its own
  network block by `ambiguous_segmentation.BUILDERS`), or
  "package.module:factory" -> factory(config)."""
  if ":" in config.model:
    return import_model(config.model)(config)
  require_choice(config, "model", MODELS)
  return ambiguous_segmentation.BUILDERS[config.model](config)


def objective_batch(images: jax.Array, masks: jax.Array) -> dict:
  """{condition [B, H, W, C], target [B, H * W]} from one mask per image."""
  return {"condition": images,
          "target": ambiguity.flat_target(masks, images.dtype)}


def predictor(config, model) -> predictors.Predictor:  # NLL: chunks of z.
  return predictors.predictor(model, chunk_size=config.eval.chunk_size)


def objective(config, model):
  """See the module docstring (`objectives.model_objective`)."""
  return objectives.model_objective(model, predictor(config, model), config.beta,
                                    config.likelihood_samples, config.top_k_fraction)


def training_batch(config, arrays: dict, rng: jax.Array) -> tuple[dict, jax.Array]:
  """One grader's mask per image, drawn at random; the objective's key."""
  grader_rng, objective_rng = jax.random.split(rng)
  masks = augmentation.pick_grader(arrays["masks"], grader_rng)
  return objective_batch(arrays["image"], masks), objective_rng


def evaluation_batch(config, arrays: dict) -> dict:
  return objective_batch(arrays["image"], arrays["masks"][:, 0])


def run_identity(config) -> dict:
  """Settings the checkpoints depend on beyond their shapes."""
  identity = {k: config[k] for k in ("model", "dataset", "image_size", "beta",
                                     "validation_size")}
  identity.update(data=config.data.to_dict(), **{
      block: config[block].to_dict() for block in ambiguous_segmentation.NETWORKS})
  return identity


def validation(config, model, splits, rng):
  """The per-epoch hook (`ambiguity.epoch_evaluation`): the training
  objective on the first grader with fixed draws, and GED and -log p(y|x)
  over eval.validation_images images with S = eval.validation_samples."""
  per_example = objective(config, model)
  loss = lambda params, arrays, rng: per_example(
      params, evaluation_batch(config, arrays), rng)[0]
  ev = config.eval
  return ambiguity.epoch_evaluation(
      predictor(config, model), loss, splits["validation"], rng,
      config.image_size, ev.batch_size, ev.validation_images, ev.validation_samples)


EVALS = ("samples", "likelihoods", "panel", "calibration", "modes")


def evaluators(config, model) -> dict:
  """The ambiguity evaluators for the model's predictor, and panel.png."""
  from cvae_jax.data.mnist_ambiguous import CANDIDATE_NAMES  # pylint: disable=g-import-not-at-top
  ev, size, predict = config.eval, config.image_size, predictor(config, model)
  return {
      "samples": ambiguity.make_samples(
          predict, size, ev.batch_size, ev.num_samples, tuple(ev.ged_samples),
          ev.hungarian_samples),
      "likelihoods": ambiguity.make_likelihoods(predict, size, ev.batch_size,
                                                ev.num_samples),
      "panel": ambiguity.make_panel(predict, size, ev.figure_images,
                                    ev.figure_samples),
      "calibration": ambiguity.make_calibration(predict, size, ev.batch_size,
                                                ev.num_samples),
      "modes": ambiguity.make_modes(
          predict, size, ev.batch_size, ev.num_samples, ev.mode_iou_threshold,
          CANDIDATE_NAMES if config.dataset == "mnist_ambiguous" else None,
          title=config.model)}


TASK = runner.Task(
    name="prob_unet", validate=validate, make_model=make_model,
    load_splits=splits.ambiguous_splits,
    objective=objective, training_batch=training_batch,
    evaluation_batch=evaluation_batch, validation=validation,
    run_identity=run_identity,
    evaluators=evaluators, evals=EVALS,
    header=lambda config, test: {"model": config.model, "dataset": config.dataset},
    split_record=splits.ambiguous_split_record,
    units=ambiguity.UNITS, training_keys=("image", "masks"), report_eval=ambiguity.epoch_line,
    loading_message=lambda config: f"loading {config.dataset}...",
    headline=ambiguity.HEADLINE, test_streams=4)
train_and_evaluate = TASK.train_and_evaluate
