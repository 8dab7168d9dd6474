"""Drawing from a trained CVAE."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax import distributions


def generate(model: nn.Module, params, condition: jax.Array,
             rng: jax.Array) -> jax.Array:
  """One sample per condition: z ~ p(z | x); Bernoulli decoders only.

  Args:
    condition: [batch, ...], e.g. int labels [batch].

  Returns:
    [batch, pixels] Bernoulli means in [0, 1] (what the reference saves).
  """
  z = distributions.sample_gaussian(
      rng, model.apply(params, condition, method="prior"))
  return model.apply(params, z, condition, method="generation").probabilities


def reconstruct(model: nn.Module, params, target: jax.Array,
                condition: jax.Array, rng: jax.Array) -> jax.Array:
  """Bernoulli means of p(y | x, z) with z ~ q(z | x, y); [batch, pixels]."""
  posterior = model.apply(params, target, condition, method="recognition")
  z = distributions.sample_gaussian(rng, posterior)
  return model.apply(params, z, condition, method="generation").probabilities


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
