"""The toy with an exact likelihood: a CVAE on the 2-D multimodal regression
of `cvae_jax.data.toy_mixture`, where log p(y | x) is known in closed form.

It is the one task where the library's estimates of -log p(y | x) (the
importance-sampled NLL, the prior Monte Carlo, the -ELBO) can be set beside
the truth on a trained model: results.json has `true_nll` (the data's own
density, the floor no model beats on average), each estimate, and
`samples.png` (samples of the model against the true modes at a few x).
No TensorFlow: the data is generated in numpy.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cvae_jax import (estimators, evaluators, objectives, plotting, runner,
                      sampling)
from cvae_jax.data import toy_mixture
from cvae_jax.errors import require_chunks, require_positive_ints
from cvae_jax.models.toy_mixture import ToyMixtureCVAE

__all__ = ["TASK", "train_and_evaluate", "validate", "make_model", "EVALS"]

PICTURE_CONDITIONS = (-0.7, 0.0, 0.7)  # One of each number of modes.


def validate(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """ConfigError / UserError for settings the task cannot work with."""
  require_positive_ints(config.data, ("train_size", "validation_size", "test_size"),
                        "data.")
  require_positive_ints(config.network, ("latent_size",), "network.")
  require_positive_ints(config.eval, ("batch_size", "num_samples", "chunk_size",
                                      "elbo_samples", "figure_samples"), "eval.")
  require_chunks(config.eval, ("num_samples",))


def make_model(config) -> ToyMixtureCVAE:
  return ToyMixtureCVAE(tuple(config.network.hidden_sizes),
                        config.network.latent_size)


def load_splits(config) -> dict:
  d = config.data
  return toy_mixture.splits(d.seed, d.train_size, d.validation_size, d.test_size)


def objective_batch(arrays: dict) -> dict:
  return {"condition": arrays["x"], "target": arrays["y"]}


def run_identity(config) -> dict:
  return {"data": config.data.to_dict()}


EVALS = ("true_nll", "importance_sampled", "prior_monte_carlo", "negative_elbo",
         "samples", "model_nll")


def context(config, model) -> evaluators.Context:
  return evaluators.Context(config, model, evaluators.CVAE, batch=objective_batch,
                            noun="examples", names={
                                "importance_sampled": "nll_importance_sampled",
                                "prior_monte_carlo": "nll_prior_monte_carlo"})


def sample_targets(model, params, x: jax.Array, rng: jax.Array,
                   num_samples: int) -> jax.Array:
  """[S, batch, 2] draws y ~ p(y | x) = E_p(z|x) p(y | x, z)."""
  z_rng, y_rng = jax.random.split(rng)
  likelihood, _ = sampling.prior_predictive(model, params, x, z_rng, num_samples)
  return likelihood.sample(y_rng)


def task_evaluators(config, model) -> dict:
  """The library's likelihood evaluators; `true_nll`: the exact
  -log p(y | x) of the data's own density (nats per example, no
  parameters); `model_nll`: the trained model's own -log p(y | x) by
  quadrature over its 2-D latent (what every estimate estimates);
  `samples`: samples.png."""
  def true_nll(params, test, rng, workdir):
    del params, rng, workdir
    return {"true_nll": -toy_mixture.log_density(test["x"][:, 0], test["y"])}

  points = config.eval.get("quadrature_points", 128)

  def model_nll(params, test, rng, workdir):
    del workdir
    return {"model_nll_quadrature": evaluators.measured(
        f"the model's -log p(y|x) by quadrature ({points}x{points} z)", "examples",
        lambda p, a, r: -estimators.log_likelihood_by_quadrature(
            model, p, objective_batch(a), points),
        params, test, rng, min(config.eval.batch_size, 100))}

  def samples(params, test, rng):
    del test
    x = jnp.asarray(PICTURE_CONDITIONS, jnp.float32)[:, None]
    return np.asarray(sample_targets(model, params, x, rng,
                                     config.eval.figure_samples))

  return {**evaluators.library(context(config, model)),
          "true_nll": evaluators.Evaluator("true_nll", true_nll),
          "model_nll": (evaluators.Evaluator("model_nll", model_nll)
                        if config.network.latent_size == 2 else None),
          "samples": evaluators.picture(
              "samples", samples, "samples.png",
              save=lambda drawn, path: plotting.save_toy_mixture_samples(
                  drawn, PICTURE_CONDITIONS, path))}


def summary(results: dict, workdir: Path) -> str:
  test = results["test"]
  truth = test.get("true_nll")
  shown = [f"true -log p(y|x) {truth:.4f}"] if truth is not None else []
  for k in ("model_nll_quadrature", "nll_importance_sampled",
            "nll_prior_monte_carlo", "negative_elbo"):
    if k in test:
      gap = f" (+{test[k] - truth:.4f})" if truth is not None else ""
      shown.append(f"{k} {test[k]:.4f}{gap}")
  return (f"test ({results['num_test_images']} examples), nats per example: "
          f"{'; '.join(shown)}; results in {workdir / 'results.json'}")


UNITS = {"*": "-log p(y|x), nats per example (y in R^2; negative: a density "
         "above 1)"}
TASK = runner.Task(
    name="toy_mixture", validate=validate, make_model=make_model,
    load_splits=load_splits,
    # The -ELBO, its KL weighted by config.kl_schedule (unweighted: a bound).
    objective=lambda config, model: objectives.model_objective(model, None),
    evaluation_batch=lambda config, arrays: objective_batch(arrays),
    run_identity=run_identity,
    evaluators=task_evaluators,
    evals=EVALS, units=UNITS, unit="nats/example", summary=summary,
    header=lambda config, test: {"model": "cvae", "num_samples": config.eval.num_samples,
                                 "kl_schedule": config.kl_schedule.to_dict()},
    loading_message=lambda config: f"generating the toy data (seed {config.data.seed})...",
    example_noun="examples",
    test_streams=5)
train_and_evaluate = TASK.train_and_evaluate
