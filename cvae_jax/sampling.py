"""Drawing images from a trained CVAE."""

import flax.linen as nn
import jax

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
