"""Bounding boxes with several plausible answers per input: a regressor, a
mixture density network (MDN), the CVAE and the hybrid objective.

Data: the offline `mnist_boxes` set or Pascal VOC (`voc/2007`), {"image"
[N, H, W, C], "boxes" [N, M, 4], "labels" [N, M], "query" [N]}. Each
training step draws one box per canvas as the target y; evaluation uses the
canvas's `query` box. With `condition="class"` the condition also holds the
box's class c, and the valid boxes are those of class c. The objectives'
batch: condition {"image" [B, H, W, C], "class" [B]}; target y [B, 4] (cx, cy,
w, h) normalised by the image side. Test figures: the
`cvae_jax.evaluators.boxes` ones over `eval.num_box_samples` boxes per canvas,
-log p(query box | x) in nats per box (a density over the normalised
coordinates), boxes.png.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections

from cvae_jax import evaluators, objectives, predictors, runner
from cvae_jax.evaluators import boxes as box_evaluators
from cvae_jax.data import splits
from cvae_jax.errors import (ConfigError, require_choice,
                             require_positive_ints, require_range,
                             require_sample_counts)
from cvae_jax.models import bbox as bbox_models
from cvae_jax.models.cvae import CVAE

__all__ = ["TASK", "train_and_evaluate", "validate", "make_model", "EVALS"]

MODEL_KINDS = ("regressor", "mdn", "cvae", "hybrid")
# What each model kind minimises, as a kind of `objectives.per_example_objective`.
OBJECTIVE_KINDS = {"regressor": "baseline", "mdn": "baseline", "cvae": "cvae",
                   "hybrid": "hybrid"}
CONDITIONS = ("image", "class")
NUM_CLASSES = {"mnist_boxes": 10, "voc/2007": 20}


def validate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """ConfigError / UserError for settings the task cannot work with."""
  require_choice(config, "model", MODEL_KINDS)
  require_choice(config, "condition", CONDITIONS)
  require_choice(config, "dataset", tuple(NUM_CLASSES))
  require_range(config, "hybrid_alpha", 0.0, 1.0)
  require_positive_ints(config, ("image_size",))
  bbox_models.check_network(config.network)
  if config.dataset == "mnist_boxes":
    splits.box_canvas_spec(config).check()
  require_positive_ints(config.eval, (
      "batch_size", "num_box_samples", "num_samples", "figure_images"), "eval.")
  require_sample_counts(config.eval, "best_of", "num_box_samples")
  classes = NUM_CLASSES[config.dataset]
  if not (config.eval.figure_class == -1 or 0 <= config.eval.figure_class < classes):
    raise ConfigError(f"eval.figure_class must be -1 (the queried box's class) "
                      f"or a class in 0-{classes - 1}, got "
                      f"{config.eval.figure_class!r}; set --config.eval.figure_class")
  if config.eval.figure_class != -1 and config.condition != "class":
    raise ConfigError("eval.figure_class needs --config.condition=class")


def make_model(config: ml_collections.ConfigDict):
  """BoxRegressor, BoxMixtureDensityNet or BoxCVAE (cvae and hybrid)."""
  net = config.network
  fields = dict(channels=tuple(net.channels), kernels=tuple(net.kernels),
                pools=tuple(net.pools), first_stride=net.first_stride,
                features=net.features, hidden=net.hidden, min_std=net.min_std,
                num_classes=(NUM_CLASSES[config.dataset]
                             if config.condition == "class" else 0))
  if config.model == "regressor":
    return bbox_models.BoxRegressor(**fields)
  if config.model == "mdn":
    return bbox_models.BoxMixtureDensityNet(**fields,
                                            num_components=net.num_components,
                                            box_std=net.mdn_box_std)
  return bbox_models.BoxCVAE(**fields, latent=net.latent, box_std=net.cvae_box_std)


def objective_batch(config, arrays: dict,
                    rng: jax.Array | None) -> tuple[dict, jax.Array]:
  """The objectives' batch and the valid-box mask [B, M].

  The target is a box drawn uniformly among each canvas's boxes (rng), or
  its `query` box (rng None, evaluation).
  """
  labels = arrays["labels"]
  if rng is None:
    index = arrays["query"]
  else:
    index = jax.random.categorical(rng, jnp.where(labels >= 0, 0.0, -jnp.inf))
  target = jnp.take_along_axis(arrays["boxes"], index[:, None, None], axis=1)[:, 0]
  query_class = jnp.take_along_axis(labels, index[:, None], axis=1)[:, 0]
  if config.condition == "class":
    valid = (labels >= 0) & (labels == query_class[:, None])
  else:
    valid = labels >= 0
    query_class = jnp.zeros_like(query_class)  # Not part of the condition.
  condition = {"image": arrays["image"], "class": query_class}
  return {"condition": condition, "target": target}, valid


def objective(config, model):
  """(params, batch, rng, kl_weight) -> [B] nats per box: what `config.model`
  minimises (the regressor and the MDN: their exact -log p(y | x))."""
  return objectives.per_example_objective(OBJECTIVE_KINDS[config.model], model,
                                          config.hybrid_alpha)


def training_batch(config, arrays: dict, rng: jax.Array) -> tuple[dict, jax.Array]:
  """A box drawn uniformly per canvas as the target; the objective's key."""
  target_rng, objective_rng = jax.random.split(rng)
  return objective_batch(config, arrays, target_rng)[0], objective_rng


def run_identity(config) -> dict:
  """Settings the checkpoints depend on beyond their shapes."""
  identity = {k: config[k] for k in ("model", "condition", "dataset", "image_size",
                                     "validation_size")}
  identity.update(data=config.data.to_dict(), network=config.network.to_dict())
  return {**identity, **objectives.objective_settings(  # One GSNN sample.
      OBJECTIVE_KINDS[config.model], config.hybrid_alpha, 1)}


# The config's default `evals`: box figures, -log p(box | x), boxes.png.
EVALS = ("boxes", "exact", "importance_sampled", "pictures")


def task_evaluators(config, model) -> dict:
  """The box evaluator for the model's predictions, the library's
  -log p(box | x) of each canvas's query box (exact for a net with no
  latent), and boxes.png."""
  ev, predict = config.eval, predictors.predictor(model)
  batch_of = lambda arrays: objective_batch(config, arrays, None)
  kind = evaluators.CVAE if isinstance(model, CVAE) else evaluators.DETERMINISTIC
  ctx = evaluators.Context(
      config, model, kind, batch=lambda arrays: batch_of(arrays)[0],
      noun="canvases", names={"exact": "nll_exact",
                              "importance_sampled": "nll_importance_sampled"})
  return {
      **evaluators.library(ctx),
      "boxes": box_evaluators.make_boxes(predict, batch_of, ev.batch_size,
                                         ev.num_box_samples, tuple(ev.best_of)),
      "pictures": box_evaluators.make_pictures(
          predict, batch_of, ev.figure_images, ev.num_box_samples,
          ev.figure_class)}


UNITS = {"*_iou": "box IoU", "coverage_*": "share of valid boxes",
         "precision_*": "share of samples", "valid_boxes": "boxes per canvas",
         "nll_*": "nats per box (density over normalised cx, cy, w, h)"}
TASK = runner.Task(
    name="bbox", validate=validate, make_model=make_model,
    load_splits=splits.box_splits,
    objective=objective, training_batch=training_batch,
    evaluation_batch=lambda config, arrays: objective_batch(config, arrays, None)[0],
    run_identity=run_identity, evaluators=task_evaluators, evals=EVALS,
    header=lambda config, test: {
        "model": config.model, "condition": config.condition,
        "dataset": config.dataset, "num_box_samples": config.eval.num_box_samples,
        "num_samples": config.eval.num_samples},
    units=UNITS, unit="nats/box", example_noun="canvases", test_streams=2)
train_and_evaluate = TASK.train_and_evaluate
