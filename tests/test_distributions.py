import chex
import jax
import jax.numpy as jnp
import numpy as np

from cvae_jax import distributions
from cvae_jax.distributions import DiagonalGaussian


def _gaussians(key, shape=(3, 5)):
  k1, k2, k3, k4 = jax.random.split(key, 4)
  q = DiagonalGaussian(jax.random.normal(k1, shape),
                       0.5 * jax.random.normal(k2, shape))
  p = DiagonalGaussian(jax.random.normal(k3, shape),
                       0.5 * jax.random.normal(k4, shape))
  return q, p


def test_kl_matches_monte_carlo_estimate():
  q, p = _gaussians(jax.random.PRNGKey(0))
  z = distributions.sample_gaussian(jax.random.PRNGKey(1), q, 200_000)
  chex.assert_shape(z, (200_000, 3, 5))
  monte_carlo = jnp.mean(distributions.gaussian_log_density(z, q)
                         - distributions.gaussian_log_density(z, p), axis=0)
  analytic = distributions.kl_diagonal_gaussians(q, p)
  chex.assert_shape(analytic, (3,))
  np.testing.assert_allclose(analytic, monte_carlo, atol=0.05)


def test_kl_to_standard_normal_is_the_reference_formula():
  q, _ = _gaussians(jax.random.PRNGKey(2))
  reference = -0.5 * jnp.sum(1 + q.log_variance - q.mean**2
                             - jnp.exp(q.log_variance), axis=-1)
  np.testing.assert_allclose(
      distributions.kl_diagonal_gaussians(q, distributions.standard_normal_like(q.mean)),
      reference, rtol=1e-5)


def test_kl_of_identical_gaussians_is_zero():
  q, _ = _gaussians(jax.random.PRNGKey(3))
  np.testing.assert_allclose(distributions.kl_diagonal_gaussians(q, q), 0.0,
                             atol=1e-6)


def test_gaussian_log_density_matches_closed_form_in_one_dimension():
  mean, log_variance, z = 0.3, np.log(2.0), 1.7
  expected = -0.5 * np.log(2 * np.pi * 2.0) - (z - mean) ** 2 / (2 * 2.0)
  got = distributions.gaussian_log_density(
      jnp.array([z]), DiagonalGaussian(jnp.array([mean]), jnp.array([log_variance])))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_bernoulli_log_likelihood_equals_minus_bce_and_is_stable():
  logits = jnp.array([[-3.0, 0.0, 2.5, 40.0, -40.0]])
  targets = jnp.array([[0.0, 0.3, 1.0, 1.0, 0.0]])
  p = jax.nn.sigmoid(logits)
  bce = -(targets * jnp.log(p) + (1 - targets) * jnp.log1p(-p))
  got = distributions.bernoulli_log_likelihood(logits, targets)
  chex.assert_shape(got, (1,))
  l64, t64 = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
  np.testing.assert_allclose(got, np.sum(t64 * l64 - np.logaddexp(0.0, l64)),
                             rtol=1e-6)
  np.testing.assert_allclose(
      distributions.bernoulli_log_likelihood(logits[:, :3], targets[:, :3]),
      -jnp.sum(bce[:, :3]), rtol=1e-5)
  # Saturated logits: finite and equal to a float64 reference.
  big = np.array([100.0, -100.0, 90.0, -90.0, 30.0])
  t = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
  reference = np.sum(t * big - np.logaddexp(0.0, big))
  np.testing.assert_allclose(
      distributions.bernoulli_log_likelihood(jnp.asarray(big), jnp.asarray(t)),
      reference, rtol=1e-6)
