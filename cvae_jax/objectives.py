"""Training objectives: plain jittable functions of (params, batch, rng).

A batch is a dict with `target` (y, [batch, ...]) and `condition` (x, [batch, ...]),
and optionally `target_mask` ([batch, pixels], 1 where y is to be predicted:
only those pixels are counted). The model is any CVAE module of
`cvae_jax.models` (recognition / prior / generation methods). Bernoulli
likelihood over the last axis of the target. Per-example values are in nats.

The objectives of Sohn et al. (2015), each to be minimised:
  CVAE    -ELBO = E_q(z|x,y)[-log p(y | x, z)] + KL(q(z | x, y) || p(z | x))
  GSNN    E_p(z|x)[-log p(y | x, z)]   (q = p: no KL term)
  hybrid  alpha * CVAE + (1 - alpha) * GSNN
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
  reconstruction = -target_log_likelihood(model, params, batch, z)
  kl = distributions.kl_diagonal_gaussians(posterior, prior)
  return NegativeElbo(reconstruction + kl, reconstruction, kl)


def target_log_likelihood(model: nn.Module, params, batch: dict,
                          z: jax.Array) -> jax.Array:
  """log p(y | x, z) over the masked pixels of y.

  Args:
    z: [..., batch, latent]; leading sample axes are allowed.

  Returns:
    [..., batch] in nats.
  """
  logits = model.apply(params, z, batch["condition"], method="generation")
  return distributions.bernoulli_log_likelihood(
      logits, batch["target"], batch.get("target_mask"))


def gsnn_negative_log_likelihood(model: nn.Module, params, batch: dict,
                                 rng: jax.Array) -> jax.Array:
  """The GSNN objective: -log p(y | x, z) with one z ~ p(z | x); [batch] nats.

  A single-sample estimate of E_p(z|x)[-log p(y | x, z)], an upper bound on
  -log p(y | x) (Jensen). There is no KL term: the recognition net is unused.
  """
  prior = model.apply(params, batch["condition"], method="prior")
  z = distributions.sample_gaussian(rng, prior)
  return -target_log_likelihood(model, params, batch, z)


def hybrid_objective(model: nn.Module, params, batch: dict, rng: jax.Array,
                     alpha: float) -> jax.Array:
  """alpha * (-ELBO) + (1 - alpha) * GSNN objective; [batch] nats.

  Both terms use the same `rng` (common random numbers), so alpha = 1 gives
  `negative_elbo(...).loss` and alpha = 0 `gsnn_negative_log_likelihood`
  exactly.
  """
  cvae = negative_elbo(model, params, batch, rng).loss
  gsnn = gsnn_negative_log_likelihood(model, params, batch, rng)
  return alpha * cvae + (1.0 - alpha) * gsnn


def baseline_negative_log_likelihood(model: nn.Module, params,
                                     batch: dict) -> jax.Array:
  """-log p(y | x) of a deterministic net x -> logits; [batch] nats."""
  logits = model.apply(params, batch["condition"])
  return -distributions.bernoulli_log_likelihood(
      logits, batch["target"], batch.get("target_mask"))


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
