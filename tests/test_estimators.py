"""The estimators against a linear-Gaussian model whose log p(y) is known.

z ~ N(0, 1) (latent 1), y | z ~ N(a z + b, s^2)  =>  y ~ N(b, a^2 + s^2),
posterior z | y ~ N(a (y - b) / (a^2 + s^2), s^2 / (a^2 + s^2)).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvae_jax import distributions, estimators
from cvae_jax.distributions import DiagonalGaussian

A, B, S = 2.0, 0.5, 0.6


def _log_likelihood_fn(y):
  def fn(z):  # z [chunk, batch, 1] -> [chunk, batch]
    return distributions.gaussian_log_density(
        y[..., None], DiagonalGaussian(A * z + B, jnp.full_like(z, 2 * np.log(S))))
  return fn


def _exact_log_marginal(y):
  var = A**2 + S**2
  return -0.5 * (np.log(2 * np.pi * var) + (np.asarray(y) - B) ** 2 / var)


def _exact_posterior(y):
  var = A**2 + S**2
  mean = A * (y - B) / var
  return DiagonalGaussian(mean[:, None], jnp.full((len(y), 1), np.log(S**2 / var)))


def _prior(batch):
  return distributions.standard_normal_like(jnp.zeros((batch, 1)))


def _rough_proposal(y):
  """The exact posterior, shifted and widened: a realistic imperfect q."""
  exact = _exact_posterior(y)
  std = jnp.exp(0.5 * exact.log_variance)
  return DiagonalGaussian(exact.mean + 0.5 * std, exact.log_variance + np.log(2.0))


Y = jnp.array([-3.0, -0.5, 0.5, 1.2, 4.0])


class EstimatorTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_exact_posterior_proposal_is_exact_for_any_chunking(self):
    # With q = p(z | y) every importance weight equals p(y): checks the chunked
    # running logsumexp, not just the sampling.
    estimate = self.variant(
        lambda rng: estimators.importance_sampled_log_likelihood(
            _log_likelihood_fn(Y), _exact_posterior(Y), _prior(len(Y)), rng,
            num_samples=60, chunk_size=6))(jax.random.PRNGKey(0))
    chex.assert_shape(estimate, (len(Y),))
    np.testing.assert_allclose(estimate, _exact_log_marginal(Y), rtol=1e-5)

  def test_one_chunk_and_one_slice_need_no_loop_and_stay_exact(self):
    # chunk_size == K and one slice: the estimator makes a single call of
    # the likelihood (no XLA loop, which conv decoders need on CPU).
    calls = []
    def counting(z):
      calls.append(z.shape)
      return _log_likelihood_fn(Y)(z)
    estimate = jax.jit(lambda rng: estimators.importance_sampled_log_likelihood(
        counting, _exact_posterior(Y), _prior(len(Y)), rng, num_samples=40,
        chunk_size=40, rows_per_slice=10_000))(jax.random.PRNGKey(0))
    assert calls == [(40, len(Y), 1)]
    np.testing.assert_allclose(estimate, _exact_log_marginal(Y), rtol=1e-5)

  def test_importance_sampling_converges_as_k_grows(self):
    errors = []
    for k in (1, 10, 100, 2000):
      estimates = jax.vmap(lambda rng, k=k: estimators.importance_sampled_log_likelihood(
          _log_likelihood_fn(Y), _rough_proposal(Y), _prior(len(Y)), rng, k,
          chunk_size=min(k, 100)))(jax.random.split(jax.random.PRNGKey(1), 50))
      errors.append(float(jnp.mean(jnp.abs(estimates - _exact_log_marginal(Y)))))
    assert errors[-1] < 0.03, errors
    assert errors[0] > errors[1] > errors[2] > errors[3], errors

  def test_prior_monte_carlo_converges_but_needs_more_samples(self):
    def error(proposal, k):
      estimate = estimators.importance_sampled_log_likelihood(
          _log_likelihood_fn(Y), proposal, _prior(len(Y)),
          jax.random.PRNGKey(2), k, chunk_size=500)
      return float(jnp.max(jnp.abs(estimate - _exact_log_marginal(Y))))
    prior_error = error(_prior(len(Y)), 5000)
    assert prior_error < 0.1  # Converges...
    # ...but importance sampling with 1/10 the samples is closer still.
    assert error(_rough_proposal(Y), 500) < prior_error

  def test_importance_sampled_estimate_is_above_elbo_on_average(self):
    q = _rough_proposal(Y)
    z = distributions.sample_gaussian(jax.random.PRNGKey(3), q, 20_000)
    elbo = jnp.mean(_log_likelihood_fn(Y)(z) + distributions.gaussian_log_density(
        z, _prior(len(Y))) - distributions.gaussian_log_density(z, q), axis=0)
    estimates = jax.vmap(lambda rng: estimators.importance_sampled_log_likelihood(
        _log_likelihood_fn(Y), q, _prior(len(Y)), rng, 10))(
            jax.random.split(jax.random.PRNGKey(4), 2000))
    mean_estimate = np.asarray(jnp.mean(estimates, axis=0))
    exact = _exact_log_marginal(Y)
    # ELBO <= E[IS estimate] <= log p(y) (Jensen), up to Monte-Carlo error.
    assert np.all(np.asarray(elbo) < mean_estimate)
    assert np.all(mean_estimate < exact + 0.01)

  def test_chunk_size_must_divide_samples(self):
    with pytest.raises(ValueError, match="multiple"):
      estimators.importance_sampled_log_likelihood(
          _log_likelihood_fn(Y), _prior(len(Y)), _prior(len(Y)),
          jax.random.PRNGKey(0), 10, chunk_size=3)

  def test_slicing_the_likelihood_calls_does_not_change_the_estimate(self):
    def estimate(rows_per_slice):
      return estimators.importance_sampled_log_likelihood(
          _log_likelihood_fn(Y), _rough_proposal(Y), _prior(len(Y)),
          jax.random.PRNGKey(5), 60, chunk_size=20, rows_per_slice=rows_per_slice)
    np.testing.assert_allclose(estimate(10), estimate(10_000), rtol=1e-6)
