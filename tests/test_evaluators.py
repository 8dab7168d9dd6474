"""cvae_jax.evaluators on their own: each library estimator of -log p(y | x)
against the closed form of a linear-Gaussian CVAE, whose marginal, posterior
and prediction at the prior mean are known exactly; which evaluators apply
to which kind of model; names in `evals`; stable stream keys."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cvae_jax import evaluators
from cvae_jax.distributions import DiagonalGaussian
from cvae_jax.errors import ConfigError
from cvae_jax.models.cvae import CVAE

LATENT = 3
NOISE_VARIANCE = 0.5  # sigma^2 of p(y | z).


class LinearGaussianCVAE(CVAE):
  """p(z | x) = N(a x, I), p(y | x, z) = N(z, sigma^2 I) and the exact
  posterior as q(z | x, y), so p(y | x) = N(a x, (1 + sigma^2) I)."""

  def setup(self):
    self.a = self.param("a", nn.initializers.constant(0.7), ())

  def prior_from_features(self, features):
    mean = self.a * features
    return DiagonalGaussian(mean, jnp.zeros_like(mean))

  def recognition_from_features(self, target, features):
    s2 = NOISE_VARIANCE
    mean = (self.a * features * s2 + target) / (1 + s2)
    return DiagonalGaussian(mean, jnp.full_like(mean, jnp.log(s2 / (1 + s2))))

  def generation_from_features(self, z, features):
    return DiagonalGaussian(z, jnp.full_like(z, jnp.log(NOISE_VARIANCE)))


class MarginalRegressor(nn.Module):
  """The same model's exact p(y | x), as a deterministic net."""

  @nn.compact
  def __call__(self, condition):
    a = self.param("a", nn.initializers.constant(0.7), ())
    mean = a * condition
    return DiagonalGaussian(mean, jnp.full_like(mean, jnp.log(1 + NOISE_VARIANCE)))


def _log_normal(y, mean, variance):
  return np.sum(-0.5 * (np.log(2 * np.pi * variance) + (y - mean) ** 2 / variance), -1)


def _data(n=64, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, LATENT)).astype(np.float32)
  y = (0.7 * x + rng.normal(size=(n, LATENT)) * np.sqrt(1 + NOISE_VARIANCE)
       ).astype(np.float32)
  return {"condition": x, "target": y}


def _config(**eval_settings):
  config = ml_collections.ConfigDict()
  config.eval = ml_collections.ConfigDict(dict(
      batch_size=16, num_samples=50, chunk_size=25, large_num_samples=100,
      large_num_images=8, elbo_samples=4))
  config.eval.update(eval_settings)
  return config


def _build(names, kind=evaluators.CVAE, config=None, own=None, model=None):
  config = config or _config()
  model = model or (MarginalRegressor() if kind == evaluators.DETERMINISTIC
                    else LinearGaussianCVAE())
  ctx = evaluators.Context(config, model, kind)
  available = {**evaluators.library(ctx), **(own or {})}
  return {e.name: e for e in evaluators.build(
      names, tuple(evaluators.LIBRARY), available)}, model


def _params(model, test):
  if isinstance(model, CVAE):
    return model.init(jax.random.PRNGKey(0), test["target"][:1], test["condition"][:1])
  return model.init(jax.random.PRNGKey(0), test["condition"][:1])


def _run(evaluator, model, test, tmp_path, seed=1):
  values = evaluator.run(_params(model, test), test, jax.random.PRNGKey(seed), tmp_path)
  (figure, per_example), = values.items()
  return figure, np.asarray(per_example)


def test_exact_of_a_deterministic_model_is_its_closed_form(tmp_path):
  test = _data()
  found, model = _build(["exact"], evaluators.DETERMINISTIC)
  figure, values = _run(found["exact"], model, test, tmp_path)
  assert figure == "exact"
  chex.assert_shape(values, (64,))
  expected = -_log_normal(test["target"], 0.7 * test["condition"], 1 + NOISE_VARIANCE)
  np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_importance_sampling_from_the_exact_posterior_is_the_marginal(tmp_path):
  """With q = the exact posterior every importance weight is p(y | x): the
  estimate is exact whatever the noise."""
  test = _data()
  found, model = _build(["importance_sampled"])
  figure, values = _run(found["importance_sampled"], model, test, tmp_path)
  assert figure == "importance_sampled"
  chex.assert_shape(values, (64,))
  expected = -_log_normal(test["target"], 0.7 * test["condition"], 1 + NOISE_VARIANCE)
  np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-4)


def test_the_elbo_of_the_exact_posterior_is_tight(tmp_path):
  """KL is analytic, the reconstruction term a Monte-Carlo mean over
  elbo_samples z ~ q: unbiased for -log p(y | x) when q is the posterior."""
  test = _data()
  found, model = _build(["negative_elbo"], config=_config(elbo_samples=400))
  _, values = _run(found["negative_elbo"], model, test, tmp_path)
  chex.assert_shape(values, (64,))
  expected = -_log_normal(test["target"], 0.7 * test["condition"], 1 + NOISE_VARIANCE)
  np.testing.assert_allclose(values, expected, atol=0.25)
  assert abs(values.mean() - expected.mean()) < 0.05


def test_prior_mean_is_the_likelihood_of_the_prediction_at_the_prior_mean(tmp_path):
  test = _data()
  found, model = _build(["prior_mean"])
  _, values = _run(found["prior_mean"], model, test, tmp_path)
  expected = -_log_normal(test["target"], 0.7 * test["condition"], NOISE_VARIANCE)
  np.testing.assert_allclose(values, expected, rtol=1e-5)
  marginal = -_log_normal(test["target"], 0.7 * test["condition"], 1 + NOISE_VARIANCE)
  assert values.mean() > marginal.mean() + 0.5  # Not an estimate of p(y|x).


def test_prior_monte_carlo_converges_to_the_marginal_from_above(tmp_path):
  test = _data()
  marginal = -_log_normal(test["target"], 0.7 * test["condition"],
                          1 + NOISE_VARIANCE).mean()
  gaps = []
  for samples in (10, 2000):
    found, model = _build(["prior_monte_carlo"],
                          config=_config(num_samples=samples, chunk_size=10))
    _, values = _run(found["prior_monte_carlo"], model, test, tmp_path)
    gaps.append(values.mean() - marginal)
  # E[log mean of S weights] <= log p: the estimate of -log p is biased up,
  # by less as S grows.
  assert gaps[0] > gaps[1] > -0.02
  assert gaps[1] < 0.05


def test_the_large_estimate_sees_only_its_images(tmp_path):
  test = _data()
  found, model = _build(["importance_sampled_large"])
  _, values = _run(found["importance_sampled_large"], model, test, tmp_path)
  chex.assert_shape(values, (8,))


def test_which_evaluators_apply_to_which_kind_of_model():
  names = list(evaluators.LIBRARY)
  assert set(_build(names, evaluators.DETERMINISTIC)[0]) == {"exact"}
  assert set(_build(names, evaluators.GSNN)[0]) == {"prior_mean", "prior_monte_carlo"}
  assert set(_build(names, evaluators.CVAE)[0]) == set(names) - {"exact"}


def test_an_unknown_name_is_one_config_error_naming_the_known_ones():
  with pytest.raises(ConfigError, match=r"unknown evaluator\(s\) 'iou'.*"
                     r"importance_sampled.*set --config.evals"):
    _build(["prior_mean", "iou"])


def test_stream_keys_do_not_depend_on_which_evaluators_run():
  everything = _build(list(evaluators.LIBRARY))[0]
  some = _build(["negative_elbo", "prior_mean"])[0]
  for name, evaluator in some.items():
    assert evaluator.index == everything[name].index, name
  assert len({e.index for e in everything.values()}) == len(everything)


def test_a_tasks_own_evaluator_takes_the_place_of_the_librarys():
  own = evaluators.Evaluator("prior_mean", lambda *a: {"mine": 1.0})
  found, _ = _build(["prior_mean"], own={"prior_mean": own})
  assert found["prior_mean"].run() == {"mine": 1.0}


def test_settings_and_figure_names_come_from_the_context(tmp_path):
  """A task with flat config keys (the label task's) and its own figure
  names: the evaluator reads and declares those keys."""
  config = ml_collections.ConfigDict(dict(eval_batch_size=32, importance_samples=20,
                                          importance_chunk_size=10))
  ctx = evaluators.Context(
      config, LinearGaussianCVAE(), evaluators.CVAE,
      names={"importance_sampled": "nll"},
      settings={"batch_size": "eval_batch_size", "num_samples": "importance_samples",
                "chunk_size": "importance_chunk_size"})
  (evaluator,) = evaluators.build(["importance_sampled"], (),
                                  evaluators.library(ctx))
  assert evaluator.estimators == {
      "nll": "(c) importance-sampled -log p(y|x), S=20"}
  test = _data(32)
  figure, values = _run(evaluator, ctx.model, test, tmp_path)
  assert figure == "nll"
  chex.assert_shape(values, (32,))


def test_each_figure_names_its_estimator():
  found, _ = _build(list(evaluators.LIBRARY))
  assert found["importance_sampled"].estimators == {
      "importance_sampled": "(c) importance-sampled -log p(y|x), S=50"}
  assert found["prior_monte_carlo"].estimators == {
      "prior_monte_carlo": "(b) prior Monte Carlo -log p(y|x), S=50"}


def test_a_setting_the_config_lacks_is_one_config_error():
  config = _config()
  del config.eval["large_num_samples"]
  with pytest.raises(ConfigError, match=r"'importance_sampled_large' reads "
                     r"eval.large_num_samples, which this config does not have"):
    _build(["importance_sampled_large"], config=config)


def test_quadrature_gives_the_exact_marginal_of_the_linear_gaussian_model():
  # What the toy task's `model_nll` evaluator computes, on a model whose
  # p(y | x) is known: a 3-D latent on a 40^3 grid.
  model = LinearGaussianCVAE()
  data = {k: jnp.asarray(v[:8]) for k, v in _data().items()}
  params = model.init(jax.random.PRNGKey(0), data["target"], data["condition"])
  from cvae_jax import estimators  # pylint: disable=g-import-not-at-top
  quadrature = estimators.log_likelihood_by_quadrature(model, params, data, 40)
  exact = _log_normal(np.asarray(data["target"]), 0.7 * np.asarray(data["condition"]),
                      1 + NOISE_VARIANCE)
  chex.assert_shape(quadrature, (8,))
  np.testing.assert_allclose(quadrature, exact, atol=1e-3)
