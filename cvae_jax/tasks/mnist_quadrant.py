"""MNIST conditioned on an image: complete a digit from 1, 2 or 3 quadrants.

Sohn, Lee & Yan (2015), section 5.1: a baseline net, a CVAE, a GSNN and the
hybrid objective, with early stopping on the validation split; test figures
are the paper's three estimates of -log p(y | x) and the 10-sample -ELBO the
Pyro example reports, in nats per image over the hidden pixels. A CVAE with
`baseline_training="pretrained"` first trains (or reuses) a baseline in
`config.baseline_workdir` (default `workdir/baseline`) and freezes it.
"""

from pathlib import Path

import ml_collections
import numpy as np

from cvae_jax import evaluators, objectives, runner
from cvae_jax.data import mnist, quadrants
from cvae_jax.evaluators import pictures
from cvae_jax.errors import (ConfigError, require_chunks,
                             require_choice, require_positive_ints, require_range)
from cvae_jax.models import BaselineNet, QuadrantCVAE
from cvae_jax.models.quadrant import check_network, fill_hidden
from cvae_jax.training.optimizers import OPTIMIZERS

__all__ = ["TASK", "train_and_evaluate", "validate", "make_model", "EVALS"]

MODEL_KINDS = objectives.OBJECTIVES
BASELINE_TRAINING = ("pretrained", "joint")
# optax optimisers whose default weight decay moves parameters with zero gradient.
DECOUPLED_WEIGHT_DECAY = ("adamw", "lion")


def validate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """ConfigError / UserError for settings the task cannot work with."""
  require_choice(config, "model", MODEL_KINDS)
  require_choice(config, "baseline_training", BASELINE_TRAINING)
  require_range(config, "hybrid_alpha", 0.0, 1.0)
  require_positive_ints(config, ("gsnn_samples", "validation_size"))
  quadrants.check_quadrant_config(config.num_quadrants, config.quadrant_order)
  require_choice(config, "binarisation", quadrants.BINARISATIONS)
  check_network(config.network)
  if (_frozen_baseline(config, make_model(config))
      and config.optimizer in DECOUPLED_WEIGHT_DECAY):
    others = [o for o in OPTIMIZERS if o not in DECOUPLED_WEIGHT_DECAY]
    raise ConfigError(f"optimizer {config.optimizer!r} decays every parameter, "
                      "so the frozen pre-trained baseline would change; use "
                      f"one of {', '.join(others)}, or set "
                      "--config.baseline_training=joint")
  require_positive_ints(config.eval, (
      "batch_size", "num_samples", "large_num_samples", "chunk_size",
      "elbo_samples", "figure_images", "figure_samples"), "eval.")
  if not isinstance(config.eval.large_num_images, int) or (
      config.eval.large_num_images < 0):
    raise ConfigError("eval.large_num_images must be an integer >= 0 (0: the "
                      f"whole test split), got {config.eval.large_num_images!r}")
  require_chunks(config.eval, ("num_samples", "large_num_samples"))


def _frozen_baseline(config, model) -> bool:
  """Whether the model is a CVAE whose baseline is trained first, then frozen."""
  return (isinstance(model, QuadrantCVAE)
          and config.baseline_training == "pretrained")


def make_model(config: ml_collections.ConfigDict):
  """BaselineNet for model="baseline", else QuadrantCVAE from config.network."""
  net = config.network
  if config.model == "baseline":
    return BaselineNet(tuple(net.hidden_sizes), initialisation=net.initialisation)
  return QuadrantCVAE(**net.to_dict())


def objective(config: ml_collections.ConfigDict, model):
  """(params, batch, rng, kl_weight) -> [batch] nats: what `config.model` minimises.

  The GSNN and the hybrid's GSNN term average p(y | x, z) over
  `config.gsnn_samples` prior samples inside the log. With
  `baseline_training="joint"` the baseline's own -log p(y | x) is added, so it
  learns alongside; when pre-trained, its parameters get no gradient.
  """
  joint = isinstance(model, QuadrantCVAE) and config.baseline_training == "joint"
  return objectives.per_example_objective(
      config.model, model, config.hybrid_alpha, config.gsnn_samples,
      joint_baseline=joint)


def run_identity(config: ml_collections.ConfigDict) -> dict:
  """The settings a checkpoint of `config.model` depends on beyond its
  shapes: which pixels are given, how they are binarised, what is trained.
  A shared baseline depends on the data and its own net only."""
  identity = {k: config[k] for k in (
      "model", "num_quadrants", "quadrant_order", "binarisation",
      "validation_size")}
  if isinstance(make_model(config), QuadrantCVAE):
    identity["network"] = config.network.to_dict()
    identity["baseline_training"] = config.baseline_training
  else:
    identity["network"] = {k: config.network[k]
                           for k in ("hidden_sizes", "initialisation")}
  return {**identity, **objectives.objective_settings(
      config.model, config.hybrid_alpha, config.gsnn_samples)}


def pretrained(config, workdir: Path, splits) -> dict | None:
  """For a CVAE-family model with `baseline_training="pretrained"`: the
  baseline's params {"params": {"baseline": ...}}, trained in (or resumed
  from) `config.baseline_workdir`, or `workdir/baseline` when that is empty;
  None otherwise."""
  if not _frozen_baseline(config, make_model(config)):
    return None
  baseline_dir = (Path(config.baseline_workdir).expanduser().absolute()
                  if config.baseline_workdir else workdir / "baseline")
  baseline_config = ml_collections.ConfigDict(config.to_dict())
  baseline_config.model = "baseline"
  print(f"baseline: training or resuming in {baseline_dir}", flush=True)
  state, _ = runner.train(TASK, baseline_config, baseline_dir, splits)
  return {"params": {"baseline": state.params["params"]}}


# The config's default `evals`: the paper's three estimates of -log p(y | x),
# the S=1000 importance-sampled one, the Pyro example's -ELBO, the pictures.
EVALS = ("exact", "prior_mean", "prior_monte_carlo", "importance_sampled",
         "importance_sampled_large", "negative_elbo", "completions")


def task_evaluators(config, model) -> dict:
  """The library's likelihood evaluators and completions.png: given
  quadrants (hidden pixels grey), truth, the baseline's prediction, the
  CVAE's at z = E[z | x] and `eval.figure_samples` samples z ~ p(z | x),
  each as Bernoulli means filled into the hidden pixels."""
  square = lambda images: np.asarray(images).reshape(-1, 28, 28)
  given = lambda test: (test["condition"], [
      square(np.where(test["condition"] < 0, 0.5, test["condition"])),
      square(fill_hidden(test["condition"], test["target"]))])
  # A GSNN's recognition net is untrained: it gets (a) and (b) only.
  kind = evaluators.KIND_OF_OBJECTIVE[config.model]
  return {**evaluators.library(evaluators.Context(config, model, kind)),
          "completions": pictures.make_baseline_and_samples(
              model, "completions", "completions.png", given,
              lambda x, means: square(fill_hidden(x, means)),
              config.eval.figure_images, config.eval.figure_samples)}


def load_splits(config) -> dict:
  mnist.prepare_mnist(config.data_dir, download=config.download)
  return quadrants.load_quadrant_splits(
      config.data_dir, config.num_quadrants, config.quadrant_order,
      config.binarisation, config.validation_size, config.seed)


def header(config, test: dict) -> dict:
  count = len(test["target"])
  return {
      "model": config.model,
      "protocol": config.protocol,
      "num_quadrants": config.num_quadrants,
      **objectives.objective_settings(config.model, config.hybrid_alpha,
                                      config.gsnn_samples),
      "num_samples": {"prior_monte_carlo": config.eval.num_samples,
                      "importance_sampled": config.eval.num_samples,
                      "importance_sampled_large": config.eval.large_num_samples,
                      "negative_elbo": config.eval.elbo_samples},
      "importance_sampled_large_num_images": min(
          config.eval.large_num_images or count, count)}


UNITS = {"*": "-log p(y|x), nats per image over the hidden pixels"}
TASK = runner.Task(
    name="mnist_quadrant", validate=validate, make_model=make_model,
    load_splits=load_splits, objective=objective,
    run_identity=run_identity,
    evaluators=task_evaluators,
    evals=EVALS, header=header, units=UNITS, pretrained=pretrained,
    loading_message=mnist.loading_message, test_streams=5)
train_and_evaluate = TASK.train_and_evaluate
