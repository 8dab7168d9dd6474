"""Log-densities, sampling and KL divergences used by every CVAE of the project.

All densities are summed over the last (event) axis and returned in nats.

A *likelihood* is what a generation or baseline net returns: any object
with `log_prob(y) -> [...] nats` (summed over y's event axes), `sample(seed,
sample_shape=())` and `mean` (an attribute, or a method as in distrax /
TFP: `mean_of` reads either). The library's own are `Bernoulli` over pixels
and `DiagonalGaussian` or `GaussianMixture` over continuous y; their
`log_prob` also takes `mask` and `event_ndim` (the objectives pass them for
masked pixel targets). A distrax or TFP-on-JAX distribution whose batch
shape is the batch (`distrax.Independent` over y's axes) works as it is.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["DiagonalGaussian", "GaussianMixture", "Bernoulli", "LIBRARY_LIKELIHOODS",
           "mean_of", "sample_of", "standard_normal_like", "gaussian_log_density",
           "sample_gaussian", "kl_diagonal_gaussians", "bernoulli_log_likelihood",
           "gaussian_mixture_log_density", "log_likelihood"]

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

  def sample(self, seed: jax.Array, sample_shape: tuple = ()) -> jax.Array:
    """[*sample_shape, ..., event] draws."""
    eps = jax.random.normal(seed, (*sample_shape, *self.mean.shape), self.mean.dtype)
    return self.mean + jnp.exp(0.5 * self.log_variance) * eps


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

  @property
  def mean(self) -> jax.Array:
    """[..., event]: sum_k pi_k mean_k."""
    weights = jax.nn.softmax(self.logits, axis=-1)[..., None]
    return jnp.sum(weights * self.components.mean, axis=-2)

  def sample(self, seed: jax.Array, sample_shape: tuple = ()) -> jax.Array:
    """[*sample_shape, ..., event]: a component k ~ pi, then y ~ N_k."""
    pick_rng, noise_rng = jax.random.split(seed)
    shape = (*sample_shape, *self.logits.shape[:-1])
    k = jax.random.categorical(pick_rng, self.logits, shape=shape)
    pick = lambda field: jnp.take_along_axis(
        jnp.broadcast_to(field, (*sample_shape, *field.shape)),
        k[..., None, None], axis=-2)[..., 0, :]
    chosen = DiagonalGaussian(pick(self.components.mean),
                              pick(self.components.log_variance))
    return chosen.sample(noise_rng)


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
    """p(y = 1) = sigmoid(logits), the shape of `logits`."""
    return jax.nn.sigmoid(self.logits)

  @property
  def mean(self) -> jax.Array:
    """E[y] = `probabilities`."""
    return self.probabilities

  def sample(self, seed: jax.Array, sample_shape: tuple = ()) -> jax.Array:
    """[*sample_shape, ...] 0/1 pixels (float)."""
    shape = (*sample_shape, *self.logits.shape)
    return jax.random.bernoulli(seed, self.probabilities, shape).astype(
        self.logits.dtype)


LIBRARY_LIKELIHOODS = (DiagonalGaussian, GaussianMixture, Bernoulli)


def mean_of(distribution) -> jax.Array:
  """E[y] of a likelihood: its `mean` attribute, or `mean()` (distrax, TFP)."""
  mean = getattr(distribution, "mean", None)
  if mean is None:
    raise TypeError(f"{type(distribution).__name__} has no mean; a likelihood "
                    "needs log_prob, sample and mean")
  return mean() if callable(mean) else mean


def sample_of(distribution, seed: jax.Array, sample_shape: tuple = ()) -> jax.Array:
  """Draws y ~ the likelihood: `sample(seed=..., sample_shape=...)`."""
  if not callable(getattr(distribution, "sample", None)):
    raise TypeError(f"{type(distribution).__name__} has no sample method; a "
                    "likelihood needs log_prob, sample and mean")
  return distribution.sample(seed=seed, sample_shape=sample_shape)


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
  if isinstance(likelihood, LIBRARY_LIKELIHOODS):
    return likelihood.log_prob(targets, mask=mask, event_ndim=event_ndim)
  # A user's, distrax's or TFP's: log_prob(y) summed over y's event axes.
  if mask is not None:
    raise ValueError(f"target_mask needs one of the library's likelihoods; "
                     f"{type(likelihood).__name__} gets the whole target")
  return likelihood.log_prob(targets)
