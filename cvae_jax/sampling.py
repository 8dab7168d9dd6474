"""Drawing from a trained CVAE."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax import distributions

__all__ = ["generate", "reconstruct", "prior_predictive"]


def generate(model: nn.Module, params, condition: jax.Array,
             rng: jax.Array, draw: bool = False) -> jax.Array:
  """One y per condition from z ~ p(z | x), for any likelihood the
  generation net returns (`distributions` protocol).

  Args:
    condition: [batch, ...], e.g. int labels [batch].
    draw: False: the mean of p(y | x, z) (Bernoulli: the pixel means in
      [0, 1], what the reference saves); True: a draw y ~ p(y | x, z).

  Returns:
    [batch, ...] like the target.
  """
  z_rng, y_rng = jax.random.split(rng) if draw else (rng, None)
  z = distributions.sample_gaussian(
      z_rng, model.apply(params, condition, method="prior"))
  return _mean_or_draw(model.apply(params, z, condition, method="generation"),
                       y_rng)


def reconstruct(model: nn.Module, params, target: jax.Array,
                condition: jax.Array, rng: jax.Array, draw: bool = False) -> jax.Array:
  """The mean of p(y | x, z) (or a draw) with z ~ q(z | x, y); [batch, ...]."""
  z_rng, y_rng = jax.random.split(rng) if draw else (rng, None)
  posterior = model.apply(params, target, condition, method="recognition")
  z = distributions.sample_gaussian(z_rng, posterior)
  return _mean_or_draw(model.apply(params, z, condition, method="generation"),
                       y_rng)


def _mean_or_draw(likelihood, rng):
  if rng is None:
    return distributions.mean_of(likelihood)
  return distributions.sample_of(likelihood, rng)


def prior_predictive(model: nn.Module, params, condition, rng: jax.Array | None,
                     num_samples: int = 0, with_mean: bool = False,
                     features=None):
  """p(y | x, z) at z ~ p(z | x), for a `cvae_jax.models.cvae.CVAE`: x is
  encoded once and the generation net runs once over every z.

  Args:
    rng: the noise of `num_samples` z ~ p(z | x) (None with num_samples 0).
    with_mean: put z = E[z | x] first (Sohn et al.'s deterministic
      prediction), then the samples.
    features: `model.encode(condition)`, when the caller has it.

  Returns:
    (the likelihood, batch shape [Z, batch] with Z = num_samples (+1 with
    the mean); or [batch] at the mean alone when num_samples is 0; the
    condition features).
  """
  apply = functools.partial(model.apply, params)
  if features is None:
    features = apply(condition, method="encode")
  prior = apply(features, method="prior_from_features")
  if num_samples == 0:
    if not with_mean:
      raise ValueError("prior_predictive needs num_samples > 0 or with_mean")
    z = prior.mean
  else:
    z = distributions.sample_gaussian(rng, prior, num_samples)
    if with_mean:
      z = jnp.concatenate([prior.mean[None], z])
  return apply(z, features, method="generation_from_features"), features
