"""MNIST conditioned on an image: complete a digit from 1, 2 or 3 quadrants.

Sohn, Lee & Yan (2015), section 5.1: a baseline net, a CVAE, a GSNN and the
hybrid objective, trained by the generic trainer with early stopping on the
validation split, then evaluated on the test split in the paper's three ways
plus the 10-sample negative ELBO the Pyro example reports. All figures are
negative conditional log-likelihoods, -log p(y | x), in nats per image,
counted over the hidden pixels only.

`train_and_evaluate(config, workdir)` writes `results.json` and
`completions.png`. A CVAE-family model with `baseline_training="pretrained"`
first trains (or reuses) a baseline in `config.baseline_workdir`, or in
`workdir/baseline` when that is empty, and freezes it. `validate(config,
workdir)` checks a config without importing TensorFlow. Rerunning a finished
workdir prints its figures from results.json; with other `eval.*` settings it
recomputes only the figures those change.
"""

import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cvae_jax import distributions, estimators, evaluation, objectives, plotting
from cvae_jax.data import mnist, quadrants
from cvae_jax.errors import ConfigError, check_workdir, require_positive_ints
from cvae_jax.models import BaselineNet, QuadrantCVAE
from cvae_jax.models.layers import INITIALISATIONS
from cvae_jax.models.quadrant import fill_hidden
from cvae_jax.training import InMemoryData, TrainState, trainer
from cvae_jax.training import results as results_file
from cvae_jax.training.optimizers import OPTIMIZERS

MODEL_KINDS = objectives.OBJECTIVES
BASELINE_TRAINING = ("pretrained", "joint")
# optax optimisers whose default weight decay moves parameters with zero gradient.
DECOUPLED_WEIGHT_DECAY = ("adamw", "lion")
# Test figure -> the evaluation keys it depends on (beyond the trained state).
FIGURE_KEYS = {
    "exact": ("eval.batch_size",),
    "prior_mean": ("eval.batch_size",),
    "prior_monte_carlo": ("eval.batch_size", "eval.num_samples", "eval.chunk_size"),
    "importance_sampled": ("eval.batch_size", "eval.num_samples",
                           "eval.chunk_size"),
    "importance_sampled_large": ("eval.batch_size", "eval.large_num_samples",
                                 "eval.large_num_images", "eval.chunk_size"),
    "negative_elbo": ("eval.batch_size", "eval.elbo_samples"),
}
PICTURE_KEYS = ("eval.figure_images", "eval.figure_samples")


def validate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """Raises UserError / ConfigError for a config or workdir that cannot work;
  imports no TensorFlow (entry points call it before loading data)."""
  workdir = Path(workdir).expanduser().absolute()
  check_workdir(workdir)
  if config.model not in MODEL_KINDS:
    raise ConfigError(f"model must be one of {MODEL_KINDS}, got "
                      f"{config.model!r}; set --config.model")
  if config.baseline_training not in BASELINE_TRAINING:
    raise ConfigError(f"baseline_training must be one of {BASELINE_TRAINING}, "
                      f"got {config.baseline_training!r}")
  if not 0.0 <= config.hybrid_alpha <= 1.0:
    raise ConfigError(f"hybrid_alpha must be in [0, 1], got "
                      f"{config.hybrid_alpha!r}; set --config.hybrid_alpha")
  require_positive_ints(config, ("gsnn_samples",))
  quadrants.check_quadrant_config(config.num_quadrants, config.quadrant_order)
  if config.binarisation not in quadrants.BINARISATIONS:
    raise ConfigError(f"binarisation must be one of {quadrants.BINARISATIONS}, "
                      f"got {config.binarisation!r}; set --config.binarisation")
  require_positive_ints(config.network, ("latent_size",), "network.")
  if config.network.initialisation not in INITIALISATIONS:
    raise ConfigError(f"network.initialisation must be one of {INITIALISATIONS}, "
                      f"got {config.network.initialisation!r}")
  if config.network.baseline_to_generation and (
      not config.network.generation_sees_condition):
    raise ConfigError("network.baseline_to_generation needs "
                      "network.generation_sees_condition=True (p(y|z) does not "
                      "see x); set one of them")
  if (config.model != "baseline" and config.baseline_training == "pretrained"
      and config.optimizer in DECOUPLED_WEIGHT_DECAY):
    others = [o for o in OPTIMIZERS if o not in DECOUPLED_WEIGHT_DECAY]
    raise ConfigError(f"optimizer {config.optimizer!r} decays every parameter, "
                      "so the frozen pre-trained baseline would change; use "
                      f"one of {', '.join(others)}, or set "
                      "--config.baseline_training=joint")
  if not config.network.hidden_sizes or any(
      not isinstance(h, int) or h <= 0 for h in config.network.hidden_sizes):
    raise ConfigError("network.hidden_sizes must be positive integers, got "
                      f"{config.network.hidden_sizes!r}")
  require_positive_ints(config, ("validation_size",))
  require_positive_ints(config.eval, (
      "batch_size", "num_samples", "large_num_samples", "chunk_size",
      "elbo_samples", "figure_images", "figure_samples"), "eval.")
  if not isinstance(config.eval.large_num_images, int) or (
      config.eval.large_num_images < 0):
    raise ConfigError("eval.large_num_images must be an integer >= 0 (0: the "
                      f"whole test split), got {config.eval.large_num_images!r}")
  for name in ("num_samples", "large_num_samples"):
    if config.eval[name] % min(config.eval.chunk_size, config.eval[name]):
      raise ConfigError(f"eval.{name}={config.eval[name]} must be a multiple "
                        f"of eval.chunk_size={config.eval.chunk_size}")
  trainer.validate_trainer_config(config)  # Before loading data: fail fast.


def make_model(config: ml_collections.ConfigDict):
  """BaselineNet for model="baseline", else QuadrantCVAE from config.network."""
  net = config.network
  if config.model == "baseline":
    return BaselineNet(tuple(net.hidden_sizes), initialisation=net.initialisation)
  return QuadrantCVAE(**net.to_dict())


def per_example_objective(config: ml_collections.ConfigDict, model):
  """(params, batch, rng) -> [batch] nats: the quantity `config.model` minimises.

  The GSNN and the hybrid's GSNN term average p(y | x, z) over
  `config.gsnn_samples` prior samples inside the log. With
  `baseline_training="joint"` the baseline's own -log p(y | x) is added, so it
  learns alongside; when pre-trained, its parameters get no gradient.
  """
  joint = config.model != "baseline" and config.baseline_training == "joint"
  return objectives.per_example_objective(
      config.model, model, config.hybrid_alpha, config.gsnn_samples,
      joint_baseline=joint)


def _mean_loss(per_example, params, batch, rng):
  loss = jnp.mean(per_example(params, batch, rng))
  return loss, {}


def make_loss_fn(config: ml_collections.ConfigDict, model):
  """The trainer's loss: (params, batch, rng) -> (mean nats per image, {})."""
  return functools.partial(_mean_loss, per_example_objective(config, model))


def _format_train_log(progress: trainer.Progress, metrics: dict) -> str:
  return (f"epoch {progress.epoch} [{progress.step_in_epoch * progress.batch_size}"
          f"/{progress.num_examples}] loss {metrics['loss']:.4f} nats/image")


def _format_eval_log(epoch: int, metrics: dict) -> str:
  return (f"epoch {epoch} validation loss {metrics['validation_loss']:.4f} "
          "nats/image")


def _train(config, workdir: Path, splits, baseline_params=None) -> TrainState:
  """Trains `config.model` with early stopping; returns the best state."""
  model = make_model(config)
  example = {k: v[:1] for k, v in splits["test"].items()}
  if config.model == "baseline":
    init_fn = lambda rng: model.init(rng, example["condition"])
  else:
    def init_fn(rng):
      params = model.init(rng, example["target"], example["condition"])
      if baseline_params is None:
        return params
      return {"params": {**params["params"], "baseline": baseline_params["params"]}}
  validation_rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
  evaluate = evaluation.validation_loss_evaluator(
      per_example_objective(config, model), splits["validation"],
      validation_rng, config.eval.batch_size)

  return trainer.train(config, workdir, init_fn,
                       make_loss_fn(config, model),
                       InMemoryData(splits["train"]), evaluate=evaluate,
                       report=_format_train_log, report_eval=_format_eval_log,
                       run_identity=run_identity(config))


def run_identity(config: ml_collections.ConfigDict) -> dict:
  """The settings a checkpoint of `config.model` depends on beyond its
  shapes: which pixels are given, how they are binarised, what is trained.
  A shared baseline depends on the data and its own net only. `gsnn_samples`
  is named only when it is not 1, so workdirs saved before it existed (S=1)
  still resume (`_check_gsnn_samples` refuses S>1 checkpoints at S=1)."""
  identity = {k: config[k] for k in (
      "model", "num_quadrants", "quadrant_order", "binarisation",
      "validation_size")}
  if config.model == "baseline":
    identity["network"] = {k: config.network[k]
                           for k in ("hidden_sizes", "initialisation")}
  else:
    identity["network"] = config.network.to_dict()
    identity["baseline_training"] = config.baseline_training
  if config.model == "hybrid":
    identity["hybrid_alpha"] = config.hybrid_alpha
  if config.model in ("gsnn", "hybrid") and config.gsnn_samples != 1:
    identity["gsnn_samples"] = config.gsnn_samples
  return identity


def _check_gsnn_samples(config, workdir: Path) -> None:
  """The trainer compares only the identity keys it is given, and
  `run_identity` omits gsnn_samples=1: refuse here to resume a GSNN or hybrid
  checkpoint saved with another S."""
  saved = workdir / "run_identity.json"
  checkpoints = workdir / "checkpoints"
  if (config.model not in ("gsnn", "hybrid") or not saved.exists()
      or not checkpoints.is_dir() or not any(checkpoints.iterdir())):
    return
  previous = json.loads(saved.read_text()).get("gsnn_samples", 1)
  if previous != config.gsnn_samples:
    raise ConfigError(f"{workdir} holds a run with other settings (gsnn_samples "
                      f"{previous} -> {config.gsnn_samples}); pass a new "
                      "--workdir or the original values")


def pretrained_baseline(config, workdir: Path, splits) -> dict:
  """Baseline params: trained in (or resumed from) `config.baseline_workdir`,
  or `workdir/baseline` when that is empty."""
  baseline_dir = (Path(config.baseline_workdir).expanduser().absolute()
                  if config.baseline_workdir else workdir / "baseline")
  baseline_config = ml_collections.ConfigDict(config.to_dict())
  baseline_config.model = "baseline"
  print(f"baseline: training or resuming in {baseline_dir}", flush=True)
  return _train(baseline_config, baseline_dir, splits).params


FIGURE_NAMES = {
    "exact": "exact -log p(y|x)",
    "prior_mean": "(a) -log p(y|x, z=E[z|x])",
    "prior_monte_carlo": "(b) prior Monte Carlo",
    "importance_sampled": "(c) importance-sampled",
    "importance_sampled_large": "(c) importance-sampled",
    "negative_elbo": "negative ELBO",
}


def _test_figures(config, model, params, test: dict, only=None) -> dict:
  """The test-set estimators of -log p(y | x), nats/image (mean over images),
  and their `<name>_seconds`; with `only`, just the figures named there.

  A GSNN gets (a) and (b) only: its recognition net is untrained, so neither
  importance sampling from q(z | x, y) nor the ELBO means anything.
  """
  rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
  keys = jax.random.split(rng, 5)
  ev = config.eval
  timed = {}

  def measure(name, fn, key, images=None, samples=None):
    if only is not None and name not in only:
      return
    arrays = test if images is None else {k: v[:images] for k, v in test.items()}
    count = len(arrays["target"])
    label = FIGURE_NAMES[name] + (f", S={samples}" if samples else "")
    print(f"test {label}, {count:,} images...", flush=True)
    start = time.time()
    timed[name] = float(np.mean(evaluation.map_over_batches(
        fn, params, arrays, key, ev.batch_size, description=label)))
    timed[f"{name}_seconds"] = time.time() - start

  if config.model == "baseline":
    measure("exact", lambda p, b, r: objectives.baseline_negative_log_likelihood(
        model, p, b), keys[0])
    return timed

  def negative_ll(num_samples, proposal):
    return lambda p, b, r: -estimators.cvae_log_likelihood(
        model, p, b, r, num_samples, proposal, min(ev.chunk_size, num_samples))

  measure("prior_mean", lambda p, b, r: -estimators.log_likelihood_at_prior_mean(
      model, p, b), keys[0])
  measure("prior_monte_carlo", negative_ll(ev.num_samples, "prior"), keys[1],
          samples=ev.num_samples)
  if config.model == "gsnn":  # Its recognition net is never trained: no q.
    return timed
  measure("importance_sampled", negative_ll(ev.num_samples, "recognition"),
          keys[2], samples=ev.num_samples)
  measure("importance_sampled_large",
          negative_ll(ev.large_num_samples, "recognition"), keys[3],
          ev.large_num_images or None, samples=ev.large_num_samples)
  measure("negative_elbo", lambda p, b, r: objectives.mean_negative_elbo(
      model, p, b, r, ev.elbo_samples), keys[4], samples=ev.elbo_samples)
  return timed


def completion_grid(config, model, params, baseline_params, test: dict,
                    rng: jax.Array) -> np.ndarray:
  """[rows, images, 28, 28]: given quadrants (hidden pixels grey), truth,
  baseline prediction, the CVAE's prediction at z = E[z | x], then
  `figure_samples` CVAE samples (z ~ p(z | x)); each prediction is shown as
  Bernoulli means filled into the hidden pixels."""
  count = config.eval.figure_images
  x, y = test["condition"][:count], test["target"][:count]
  baseline = BaselineNet(tuple(config.network.hidden_sizes),
                         initialisation=config.network.initialisation)
  rows = [np.where(x < 0, 0.5, x), fill_hidden(x, y),
          fill_hidden(x, baseline.apply(baseline_params, x).probabilities)]
  if config.model != "baseline":
    features = model.apply(params, x, method="encode")
    prior = model.apply(params, features, method="prior_from_features")
    z = distributions.sample_gaussian(rng, prior, config.eval.figure_samples)
    z = jnp.concatenate([prior.mean[None], z])
    means = model.apply(params, z, features,
                        method="generation_from_features").probabilities
    rows.extend(fill_hidden(x, m) for m in means)
  return np.stack([np.asarray(r) for r in rows]).reshape(len(rows), count, 28, 28)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | Path) -> dict:
  """Trains (resuming from `workdir`), evaluates on the test split and writes
  results.json and completions.png there.

  A finished workdir is not trained or evaluated again: its results.json is
  printed and returned, or, when only `eval.*` settings differ, the figures
  they change are recomputed (`FIGURE_KEYS`, `PICTURE_KEYS`).

  Returns:
    The results dict written to results.json.
  """
  workdir = Path(workdir).expanduser().absolute()
  validate(config, workdir)
  _check_gsnn_samples(config, workdir)
  finished = results_file.finished_run(workdir, config, ("eval",))
  if finished is not None:
    results_file.announce(workdir, finished)
    if not finished.changed:
      print(summary_line(finished.results, workdir), flush=True)
      return finished.results
  workdir.mkdir(parents=True, exist_ok=True)
  print(f"loading MNIST from {config.data_dir} (TensorFlow, TFDS)...",
        flush=True)
  mnist.prepare_mnist(config.data_dir, download=config.download)
  splits = quadrants.load_quadrant_splits(
      config.data_dir, config.num_quadrants, config.quadrant_order,
      config.binarisation, config.validation_size, config.seed)

  start = time.time()
  baseline_params = None
  if config.model != "baseline" and config.baseline_training == "pretrained":
    baseline_params = pretrained_baseline(config, workdir, splits)
  state = _train(config, workdir, splits, baseline_params)
  train_seconds = time.time() - start

  model = make_model(config)
  figures, only = {}, None
  if finished is not None:  # Keep the figures whose settings did not change.
    previous = finished.results
    figures = {**previous["test_negative_cll_nats_per_image"],
               **previous["seconds"]}
    only = {k for k, keys in FIGURE_KEYS.items() if finished.changes(*keys)}
    train_seconds = previous["train_seconds_this_run"]
  figures.update(_test_figures(config, model, state.params, splits["test"], only))
  if config.model == "baseline":
    baseline_params = state.params
  elif baseline_params is None:  # Trained jointly: part of the CVAE's params.
    baseline_params = {"params": state.params["params"]["baseline"]}
  picture_rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
  if finished is None or finished.changes(*PICTURE_KEYS):
    plotting.save_image_grid(
        completion_grid(config, model, state.params, baseline_params,
                        splits["test"], picture_rng),
        workdir / "completions.png")

  results = {
      "model": config.model,
      "protocol": config.protocol,
      "num_quadrants": config.num_quadrants,
      **({"gsnn_samples": config.gsnn_samples}
         if config.model in ("gsnn", "hybrid") else {}),
      "test_negative_cll_nats_per_image": {
          k: v for k, v in figures.items() if not k.endswith("_seconds")},
      "seconds": {k: v for k, v in figures.items() if k.endswith("_seconds")},
      "num_samples": {"prior_monte_carlo": config.eval.num_samples,
                      "importance_sampled": config.eval.num_samples,
                      "importance_sampled_large": config.eval.large_num_samples,
                      "negative_elbo": config.eval.elbo_samples},
      "num_test_images": len(splits["test"]["target"]),
      "importance_sampled_large_num_images": min(
          config.eval.large_num_images or len(splits["test"]["target"]),
          len(splits["test"]["target"])),
      **results_file.run_fields(workdir, config, int(state.step),
                                train_seconds),
  }
  results_file.write_results(workdir, results)
  print(summary_line(results, workdir), flush=True)
  return results


def summary_line(results: dict, workdir: Path) -> str:
  """The final figures, as the end of a run prints them."""
  values = ", ".join(f"{k} {v:.2f}" for k, v in
                     results["test_negative_cll_nats_per_image"].items())
  return (f"test negative CLL (nats/image): {values}; results in "
          f"{workdir / results_file.RESULTS_FILE}")
