"""A user's CVAE whose generation net returns a distrax distribution, through
the whole library: trained by `trainer.train`, then the objectives, the
estimators, sampling and `evaluators.evaluate_cvae`.

The Gaussian model is linear, so its exact log p(y | x) is a closed form
(y | x is Gaussian) that the estimators are checked against; the Bernoulli
model's is the library's quadrature over its 2-D latent. On the same weights,
distrax's likelihoods and the library's own (`distributions.DiagonalGaussian`,
`distributions.Bernoulli`) give the same figures.
"""

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax import (configs, distributions, estimators, evaluators, model_check,
                      objectives, sampling)
from cvae_jax.distributions import DiagonalGaussian
from cvae_jax.models.cvae import CVAE
from cvae_jax.training import InMemoryData, trainer

NUM_EXAMPLES = 256
LATENT = 2


class LinearGaussianCVAE(CVAE):
  """x [batch, 1] -> y [batch, 3]; every net linear:
  p(z | x) = N(W x + b, diag(exp(v))),
  p(y | x, z) = N(A z + B x + c, diag(exp(u))) (distrax, or the library's),
  q(z | x, y) = N(linear in [x, y], diag(exp(linear in [x, y]))).
  Hence y | x ~ N(A (W x + b) + B x + c, A diag(exp(v)) A^T + diag(exp(u)))."""
  library_likelihood: bool = False

  def setup(self):
    self.prior_net = nn.Dense(LATENT)
    self.prior_log_variance = self.param("prior_log_variance", nn.initializers.zeros,
                                         (LATENT,))
    self.recognition_net = nn.Dense(2 * LATENT)
    self.generation_net = nn.Dense(3)
    self.output_log_variance = self.param("output_log_variance",
                                          nn.initializers.zeros, (3,))

  def prior_from_features(self, x):
    mean = self.prior_net(x)
    return DiagonalGaussian(mean, jnp.broadcast_to(self.prior_log_variance, mean.shape))

  def recognition_from_features(self, y, x):
    return DiagonalGaussian(*jnp.split(self.recognition_net(
        jnp.concatenate([x, y], -1)), 2, -1))

  def generation_from_features(self, z, x):
    x = jnp.broadcast_to(x, (*z.shape[:-1], x.shape[-1]))
    loc = self.generation_net(jnp.concatenate([z, x], -1))
    log_variance = jnp.broadcast_to(self.output_log_variance, loc.shape)
    if self.library_likelihood:
      return DiagonalGaussian(loc, log_variance)
    return distrax.Independent(distrax.Normal(loc, jnp.exp(0.5 * log_variance)), 1)


class BernoulliCVAE(CVAE):
  """x [batch, 2] -> 8 binary pixels; p(y | x, z) = Bernoulli(logits of a
  small MLP of [z, x]), from distrax or the library."""
  library_likelihood: bool = False

  def setup(self):
    self.prior_net = nn.Dense(2 * LATENT)
    self.recognition_net = nn.Dense(2 * LATENT)
    self.hidden = nn.Dense(16)
    self.logits = nn.Dense(8)

  def prior_from_features(self, x):
    return DiagonalGaussian(*jnp.split(self.prior_net(x), 2, -1))

  def recognition_from_features(self, y, x):
    return DiagonalGaussian(*jnp.split(self.recognition_net(
        jnp.concatenate([x, y], -1)), 2, -1))

  def generation_from_features(self, z, x):
    x = jnp.broadcast_to(x, (*z.shape[:-1], x.shape[-1]))
    logits = self.logits(nn.tanh(self.hidden(jnp.concatenate([z, x], -1))))
    if self.library_likelihood:
      return distributions.Bernoulli(logits)
    return distrax.Independent(distrax.Bernoulli(logits=logits), 1)


def _gaussian_data(seed=0) -> dict:
  """y = A z + B x + noise, z ~ N(W x, I): a linear-Gaussian truth."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(-2, 2, (NUM_EXAMPLES, 1))
  z = x @ np.array([[1.0, -0.5]]) + rng.normal(size=(NUM_EXAMPLES, LATENT))
  y = (z @ np.array([[1.0, 0.5, -1.0], [0.0, 2.0, 1.0]]) + x @ np.array([[0.5, 0.0, 1.0]])
       + 0.3 * rng.normal(size=(NUM_EXAMPLES, 3)))
  return {"condition": x.astype(np.float32), "target": y.astype(np.float32)}


def _bernoulli_data(seed=0) -> dict:
  """Two classes (one-hot x), each lighting one half of 8 pixels, with noise."""
  rng = np.random.default_rng(seed)
  label = rng.integers(0, 2, NUM_EXAMPLES)
  probabilities = np.where(np.arange(8)[None] // 4 == label[:, None], 0.9, 0.1)
  y = (rng.random((NUM_EXAMPLES, 8)) < probabilities).astype(np.float32)
  return {"condition": np.eye(2, dtype=np.float32)[label], "target": y}


def exact_predictive(params, x) -> tuple[jax.Array, jax.Array]:
  """LinearGaussianCVAE's p(y | x) in closed form: mean [batch, 3] and the
  covariance [3, 3] (the same for every x)."""
  p = params["params"]
  kernel = p["generation_net"]["kernel"]  # [latent + 1, 3]: rows for z, then x.
  a, b = kernel[:LATENT].T, kernel[LATENT:].T
  prior_mean = x @ p["prior_net"]["kernel"] + p["prior_net"]["bias"]
  mean = prior_mean @ a.T + x @ b.T + p["generation_net"]["bias"]
  covariance = (a * jnp.exp(p["prior_log_variance"])) @ a.T + jnp.diag(
      jnp.exp(p["output_log_variance"]))
  return mean, covariance


def exact_log_likelihood(params, batch) -> jax.Array:
  """[batch] log p(y | x) of LinearGaussianCVAE in closed form, nats."""
  mean, covariance = exact_predictive(params, batch["condition"])
  return jax.scipy.stats.multivariate_normal.logpdf(batch["target"], mean, covariance)


def _train(model, data, tmp_path):
  """(model, initial params, trained params, the data as a batch): 200 Adam
  steps on the mean -ELBO through the library's trainer, on every device."""
  config = configs.trainer_defaults()
  config.update(batch_size=32, num_epochs=25, learning_rate=3e-2, steps_per_dispatch=8,
                log_every_steps=1_000, checkpoint_every_steps=1_000)
  objective = objectives.per_example_objective("cvae", model)

  def loss_fn(params, batch, rng, step):
    del step  # No KL warm-up.
    return jnp.mean(objective(params, batch, rng)), {}

  init_fn = lambda rng: model.init(rng, data["target"][:1], data["condition"][:1])
  state = trainer.train(config, tmp_path, init_fn, loss_fn, InMemoryData(data))
  batch = {k: jnp.asarray(v) for k, v in data.items()}
  return model, init_fn(jax.random.PRNGKey(0)), state.params, batch


@pytest.fixture(name="gaussian", scope="module")
def fixture_gaussian(tmp_path_factory):
  return _train(LinearGaussianCVAE(), _gaussian_data(), tmp_path_factory.mktemp("gaussian"))


@pytest.fixture(name="bernoulli", scope="module")
def fixture_bernoulli(tmp_path_factory):
  return _train(BernoulliCVAE(), _bernoulli_data(), tmp_path_factory.mktemp("bernoulli"))


def _mean_negative_elbo(model, params, batch):
  """Mean over the examples of -ELBO averaged over 16 z ~ q; nats."""
  return float(jnp.mean(objectives.mean_negative_elbo(
      model, params, batch, jax.random.PRNGKey(7), 16)))


def test_a_distrax_likelihood_passes_the_model_checker(gaussian, bernoulli):
  for model, _, _, batch in (gaussian, bernoulli):
    model_check.check_model(model, {k: v[:4] for k, v in batch.items()})


def test_training_lowers_the_loss_and_the_exact_negative_log_likelihood(gaussian,
                                                                        bernoulli):
  model, initial, params, batch = gaussian
  before = -float(jnp.mean(exact_log_likelihood(initial, batch)))
  after = -float(jnp.mean(exact_log_likelihood(params, batch)))
  assert after < before - 1.0, (before, after)
  assert _mean_negative_elbo(model, params, batch) < _mean_negative_elbo(
      model, initial, batch) - 1.0
  model, initial, params, batch = bernoulli
  assert _mean_negative_elbo(model, params, batch) < _mean_negative_elbo(
      model, initial, batch) - 1.0


def test_estimators_against_the_closed_form(gaussian):
  model, _, params, batch = gaussian
  exact = exact_log_likelihood(params, batch)  # [batch]
  # The library's own deterministic check: quadrature over the 2-D latent.
  quadrature = estimators.log_likelihood_by_quadrature(model, params, batch, 64)
  np.testing.assert_allclose(quadrature, exact, atol=1e-3)
  rng = jax.random.PRNGKey(1)
  importance = estimators.cvae_log_likelihood(model, params, batch, rng, 1000)
  prior = estimators.cvae_log_likelihood(model, params, batch, rng, 1000, "prior")
  assert np.all(np.isfinite(importance)) and np.all(np.isfinite(prior))
  # Lower bounds in expectation; per example within a few hundredths (IS) or
  # a tenth (prior Monte Carlo, far noisier) of the truth.
  exact_mean = float(jnp.mean(exact))
  assert float(jnp.mean(importance)) <= exact_mean + 0.005
  assert float(jnp.mean(jnp.abs(importance - exact))) < 0.02
  assert float(jnp.mean(jnp.abs(prior - exact))) < 0.15
  # -ELBO is an upper bound on -log p(y | x).
  assert _mean_negative_elbo(model, params, batch) > -exact_mean
  # Through the evaluators: means over the examples, in nats per example.
  figures = evaluators.evaluate_cvae(model, params, batch, jax.random.PRNGKey(2),
                                     num_samples=200, elbo_samples=16)
  assert set(figures) == {"prior_mean", "prior_monte_carlo", "importance_sampled",
                          "negative_elbo"}
  assert all(np.isfinite(v) for v in figures.values())
  assert abs(figures["importance_sampled"] + exact_mean) < 0.02
  assert abs(figures["prior_monte_carlo"] + exact_mean) < 0.05
  assert figures["negative_elbo"] > -exact_mean


def test_bernoulli_estimators_against_quadrature(bernoulli):
  model, _, params, batch = bernoulli
  truth = estimators.log_likelihood_by_quadrature(model, params, batch, 64)
  rng = jax.random.PRNGKey(1)
  importance = estimators.cvae_log_likelihood(model, params, batch, rng, 1000)
  prior = estimators.cvae_log_likelihood(model, params, batch, rng, 1000, "prior")
  assert np.all(np.isfinite(importance)) and np.all(np.isfinite(prior))
  assert float(jnp.mean(jnp.abs(importance - truth))) < 0.02
  assert float(jnp.mean(jnp.abs(prior - truth))) < 0.05
  assert abs(float(jnp.mean(importance)) - float(jnp.mean(prior))) < 0.01
  assert float(jnp.mean(importance)) <= float(jnp.mean(truth)) + 0.005


def _figures(model, params, batch) -> dict:
  """Every library function that reads the likelihood, on one model."""
  rng = jax.random.PRNGKey(3)
  hybrid = objectives.per_example_objective("hybrid", model, gsnn_samples=4)
  likelihood, _ = sampling.prior_predictive(model, params, batch["condition"], rng, 5,
                                            with_mean=True)
  return {
      "negative_elbo": objectives.negative_elbo(model, params, batch, rng).loss,
      "hybrid": hybrid(params, batch, rng),
      "importance_sampled": estimators.cvae_log_likelihood(model, params, batch, rng, 64,
                                                           chunk_size=16),
      "prior_monte_carlo": estimators.cvae_log_likelihood(model, params, batch, rng, 64,
                                                          "prior", 16),
      "at_prior_mean": estimators.log_likelihood_at_prior_mean(model, params, batch),
      "prior_predictive": estimators.batch_log_likelihood(likelihood, batch),
      "generated_mean": sampling.generate(model, params, batch["condition"], rng),
      "reconstructed_mean": sampling.reconstruct(model, params, batch["target"],
                                                 batch["condition"], rng),
      "evaluate_cvae": evaluators.evaluate_cvae(model, params, batch, rng,
                                                num_samples=64, elbo_samples=2),
  }


@pytest.mark.parametrize("which", ["gaussian", "bernoulli"])
def test_distrax_and_the_library_likelihood_give_the_same_figures(which, request):
  model, _, params, batch = request.getfixturevalue(which)
  theirs = _figures(model, params, batch)
  ours = _figures(model.clone(library_likelihood=True), params, batch)
  assert theirs.keys() == ours.keys()
  for name in ours:
    jax.tree.map(lambda a, b, name=name: np.testing.assert_allclose(
        a, b, rtol=1e-5, atol=1e-5, err_msg=name), theirs[name], ours[name])


def test_sampling_draws_from_the_distrax_likelihood(gaussian, bernoulli):
  model, _, params, batch = gaussian
  x = batch["condition"][:4]
  rng = jax.random.PRNGKey(4)
  assert sampling.generate(model, params, x, rng, draw=True).shape == (4, 3)
  # y ~ p(y | x) by z ~ p(z | x), then y ~ p(y | x, z): its mean and
  # covariance are the closed form's.
  likelihood, _ = sampling.prior_predictive(model, params, x, rng, 20_000)
  draws = distributions.sample_of(likelihood, jax.random.PRNGKey(5))
  assert draws.shape == (20_000, 4, 3)
  mean, covariance = exact_predictive(params, x)
  standard_error = jnp.sqrt(jnp.diag(covariance) / 20_000)
  assert np.all(np.abs(draws.mean(0) - mean) < 5 * standard_error)
  np.testing.assert_allclose(jnp.cov(draws[:, 0].T), covariance, rtol=0.05, atol=0.05)
  model, _, params, batch = bernoulli
  pixels = sampling.generate(model, params, batch["condition"][:4], rng, draw=True)
  assert pixels.shape == (4, 8) and set(np.unique(pixels)) <= {0.0, 1.0}
