"""Training objectives: plain jittable functions of (params, batch, rng).

A batch is a dict with `target` (y, [batch, ...]) and `condition` (x, [batch, ...]);
the model is any CVAE module of `cvae_jax.models` (recognition / prior /
generation methods). Bernoulli likelihood over the last axis of the target.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax import distributions


class NegativeElbo(NamedTuple):
  """Per-example terms, each [batch] in nats: loss = reconstruction + kl."""
  loss: jax.Array
  reconstruction: jax.Array  # -log p(y | x, z), z ~ q(z | x, y); one sample.
  kl: jax.Array  # KL(q(z | x, y) || p(z | x)), analytic.


def negative_elbo(model: nn.Module, params, batch: dict,
                  rng: jax.Array) -> NegativeElbo:
  """Single-sample negative ELBO of each example, reparameterised.

  -ELBO = E_q[-log p(y | x, z)] + KL(q(z | x, y) || p(z | x)).
  With grey-level targets the reconstruction term is PyTorch's summed
  `binary_cross_entropy`, as in the reference CVAE.
  """
  target, condition = batch["target"], batch["condition"]
  posterior = model.apply(params, target, condition, method="recognition")
  prior = model.apply(params, condition, method="prior")
  z = distributions.sample_gaussian(rng, posterior)
  logits = model.apply(params, z, condition, method="generation")
  reconstruction = -distributions.bernoulli_log_likelihood(logits, target)
  kl = distributions.kl_diagonal_gaussians(posterior, prior)
  return NegativeElbo(reconstruction + kl, reconstruction, kl)


def summed_negative_elbo_loss(model: nn.Module, params, batch: dict,
                              rng: jax.Array) -> tuple[jax.Array, dict]:
  """The reference loss: negative ELBO summed over the batch (nats per batch).

  Returns:
    (loss, {"reconstruction": summed BCE, "kl": summed KL}), all scalars;
    the trainer's `loss_fn`.
  """
  terms = negative_elbo(model, params, batch, rng)
  return jnp.sum(terms.loss), {"reconstruction": jnp.sum(terms.reconstruction),
                               "kl": jnp.sum(terms.kl)}
