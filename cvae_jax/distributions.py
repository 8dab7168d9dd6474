"""Log-densities, sampling and KL divergences used by every CVAE of the project.

All densities are summed over the last (event) axis and returned in nats.

A *likelihood* is what a generation or baseline net returns: a typed object
with `log_prob(targets, mask=None, event_ndim=1) -> [...] nats`: `Bernoulli`
over pixels, `DiagonalGaussian` or `GaussianMixture` over continuous y.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

_LOG_2PI = 1.8378770664093453  # log(2 * pi)


def _at_least_float32(*arrays):
  """Reductions run in float32 or wider, also under bfloat16 compute."""
  return [jnp.asarray(a).astype(jnp.promote_types(jnp.asarray(a).dtype, jnp.float32))
          for a in arrays]


def _check_vector_event(kind: str, mask, event_ndim: int) -> None:
  """A density over the last axis takes no mask and one event axis."""
  if mask is not None:
    raise ValueError("target_mask applies to Bernoulli targets only")
  if event_ndim != 1:
    raise ValueError(f"a {kind}'s event is its last axis, got "
                     f"event_ndim={event_ndim}")


class DiagonalGaussian(NamedTuple):
  """N(mean, diag(exp(log_variance))); both fields are [..., latent]."""

  mean: jax.Array
  log_variance: jax.Array

  def log_prob(self, targets: jax.Array, mask: jax.Array | None = None,
               event_ndim: int = 1) -> jax.Array:
    """[...] log-density in nats of targets [..., event] (the last axis is
    the event; `event_ndim` must be 1, `mask` None)."""
    _check_vector_event("DiagonalGaussian", mask, event_ndim)
    return gaussian_log_density(targets, self)


class GaussianMixture(NamedTuple):
  """sum_k softmax(logits)_k N(mean_k, diag(exp(log_variance_k))).

  logits: [..., components]; components: a DiagonalGaussian with fields
  [..., components, event].
  """

  logits: jax.Array
  components: DiagonalGaussian

  def log_prob(self, targets: jax.Array, mask: jax.Array | None = None,
               event_ndim: int = 1) -> jax.Array:
    """[...] exact log-density in nats of targets [..., event]."""
    _check_vector_event("GaussianMixture", mask, event_ndim)
    return gaussian_mixture_log_density(targets, self)


class Bernoulli(NamedTuple):
  """Independent Bernoulli pixels, sigmoid(logits); logits [..., pixels]
  (or [..., H, W]: `event_ndim` says how many trailing axes are one y)."""

  logits: jax.Array

  def log_prob(self, targets: jax.Array, mask: jax.Array | None = None,
               event_ndim: int = 1) -> jax.Array:
    """[...] nats; see `bernoulli_log_likelihood`."""
    return bernoulli_log_likelihood(self.logits, targets, mask, event_ndim)

  @property
  def probabilities(self) -> jax.Array:
    return jax.nn.sigmoid(self.logits)


def standard_normal_like(mean: jax.Array) -> DiagonalGaussian:
  """N(0, I) with the shape of `mean`."""
  zeros = jnp.zeros_like(mean)
  return DiagonalGaussian(zeros, zeros)


def gaussian_log_density(z: jax.Array, gaussian: DiagonalGaussian) -> jax.Array:
  """log N(z; mean, diag(var)), summed over the last axis.

  Args:
    z: [..., latent] points; broadcasts against the gaussian's fields.
    gaussian: the density.

  Returns:
    [...] log-density in nats.
  """
  z, mean, log_variance = _at_least_float32(z, *gaussian)
  return -0.5 * jnp.sum(
      _LOG_2PI + log_variance + jnp.square(z - mean) * jnp.exp(-log_variance),
      axis=-1)


def sample_gaussian(rng: jax.Array, gaussian: DiagonalGaussian,
                    num_samples: int | None = None) -> jax.Array:
  """Reparameterised samples mean + std * eps.

  Returns:
    [..., latent] if num_samples is None, else [num_samples, ..., latent].
  """
  mean, log_variance = gaussian
  shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
  eps = jax.random.normal(rng, shape, mean.dtype)
  return mean + jnp.exp(0.5 * log_variance) * eps


def kl_diagonal_gaussians(q: DiagonalGaussian,
                          p: DiagonalGaussian) -> jax.Array:
  """Analytic KL(q || p) between diagonal Gaussians, summed over the last axis.

  Returns:
    [...] KL divergence in nats.
  """
  q = DiagonalGaussian(*_at_least_float32(*q))
  p = DiagonalGaussian(*_at_least_float32(*p))
  log_ratio = p.log_variance - q.log_variance
  return 0.5 * jnp.sum(
      log_ratio
      + (jnp.exp(q.log_variance) + jnp.square(q.mean - p.mean))
      * jnp.exp(-p.log_variance)
      - 1.0,
      axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, targets: jax.Array,
                             mask: jax.Array | None = None,
                             event_ndim: int = 1) -> jax.Array:
  """log Bernoulli(targets; sigmoid(logits)), summed over the last
  `event_ndim` axes (1: [..., pixels]; 2: [..., H, W] masks).

  Targets may be grey levels in [0, 1] (then this is minus the binary cross
  entropy, as PyTorch's `binary_cross_entropy` computes it). Stable for any
  logit: t * l - softplus(l) == t log sigmoid(l) + (1 - t) log sigmoid(-l).
  softplus is written as relu(l) + log1p(exp(-|l|)), which XLA on CPU runs
  about 4x faster than `jax.nn.softplus` (it dominates importance sampling).

  Args:
    logits: [..., pixels].
    targets: [..., pixels], broadcasts against logits.
    mask: optional [..., pixels] weights, broadcasting likewise: only pixels
      with mask 1 are counted (e.g. the hidden quadrants of a digit).
    event_ndim: how many trailing axes make one example.

  Returns:
    [...] log-likelihood in nats (<= 0 for binary targets).
  """
  logits, targets = _at_least_float32(logits, targets)
  softplus = jax.nn.relu(logits) + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  per_pixel = targets * logits - softplus
  if mask is not None:
    per_pixel = per_pixel * mask
  return jnp.sum(per_pixel, axis=tuple(range(-event_ndim, 0)))


def gaussian_mixture_log_density(y: jax.Array, mixture: GaussianMixture) -> jax.Array:
  """log sum_k pi_k N(y; mean_k, var_k), exact (logsumexp over components).

  Args:
    y: [..., event]; broadcasts against the mixture's batch shape.

  Returns:
    [...] log-density in nats.
  """
  per_component = gaussian_log_density(y[..., None, :], mixture.components)
  logits, = _at_least_float32(mixture.logits)
  return jax.nn.logsumexp(
      jax.nn.log_softmax(logits, axis=-1) + per_component, axis=-1)


def log_likelihood(likelihood, targets: jax.Array,
                   mask: jax.Array | None = None,
                   event_ndim: int = 1) -> jax.Array:
  """log p(targets | ...) under what a generation or baseline net returned.

  Args:
    likelihood: an object with `log_prob(targets, mask, event_ndim)`
      (`Bernoulli`, `DiagonalGaussian`, `GaussianMixture`, or a user's own).
    targets: y, broadcasting against the likelihood's batch shape.
    mask: optional weights over y (Bernoulli only: 1 where y is predicted).
    event_ndim: trailing axes of one y.

  Returns:
    [...] log-likelihood in nats.
  """
  if not callable(getattr(likelihood, "log_prob", None)):
    raise TypeError(
        f"a generation or baseline net must return a likelihood with a "
        f"log_prob method (e.g. cvae_jax.distributions.Bernoulli(logits)), "
        f"got {type(likelihood).__name__}")
  return likelihood.log_prob(targets, mask=mask, event_ndim=event_ndim)
