"""Training objectives: plain jittable functions of (params, batch, rng).

A batch is a dict with `target` (y, [batch, ...]) and `condition` (x, [batch, ...]),
and optionally `target_mask` (broadcasting against the target, 1 where y is to
be predicted: only those pixels are counted, other values weight them). The
model is any `cvae_jax.models.cvae.CVAE`; every objective is a pure function
of one forward pass (`*_from_outputs`), which runs each sub-network once, and
the (model, params, batch, rng) functions below run that pass for you. The
likelihood is what the generation (or baseline) net returns: a
`distributions.Bernoulli` over every non-batch axis of the target (a
[batch, pixels] vector or a [batch, H, W] mask alike), a `DiagonalGaussian` or
`GaussianMixture` over the target's last axis (e.g. [batch, 4] box
coordinates). Per-example values are in nats.

The objectives of Sohn et al. (2015), each to be minimised:
  CVAE    -ELBO = E_q(z|x,y)[-log p(y | x, z)] + KL(q(z | x, y) || p(z | x))
  GSNN    E_p(z|x)[-log p(y | x, z)]   (q = p: no KL term), or its S-sample
          version -log (1/S) sum_s p(y | x, z_s), z_s ~ p(z | x)
  hybrid  alpha * CVAE + (1 - alpha) * GSNN
"""

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax import distributions, estimators
from cvae_jax.models.cvae import CVAE, CVAEOutputs, forward

__all__ = ["NegativeElbo", "negative_elbo_from_outputs", "gsnn_from_outputs",
           "baseline_negative_log_likelihood_from_outputs", "negative_elbo",
           "target_log_likelihood", "gsnn_negative_log_likelihood", "hybrid_objective",
           "baseline_negative_log_likelihood", "mean_negative_elbo", "OBJECTIVES",
           "per_example_objective", "objective_settings", "reconstruction_loss",
           "model_objective",
           "summed_negative_elbo_loss"]


class NegativeElbo(NamedTuple):
  """Per-example terms, each [batch] in nats: loss = reconstruction + kl."""
  loss: jax.Array
  reconstruction: jax.Array  # -log p(y | x, z), z ~ q(z | x, y); one sample.
  kl: jax.Array  # KL(q(z | x, y) || p(z | x)), analytic.


# Pure functions of one forward pass (`cvae_jax.models.cvae.forward`).

def negative_elbo_from_outputs(outputs: CVAEOutputs, batch: dict,
                               kl_weight: float | jax.Array = 1.0) -> NegativeElbo:
  """-ELBO = -log p(y | x, z) + KL(q(z | x, y) || p(z | x)), z ~ q (one
  reparameterised sample); needs a forward with `posterior=True`. With a
  `kl_weight` w (KL warm-up, `cvae_jax.schedules`) the loss is
  reconstruction + w * kl (a bound only at w = 1); `kl` stays unweighted."""
  reconstruction = -estimators.batch_log_likelihood(outputs.likelihood, batch)
  kl = distributions.kl_diagonal_gaussians(outputs.posterior, outputs.prior)
  return NegativeElbo(reconstruction + kl_weight * kl, reconstruction, kl)


def gsnn_from_outputs(outputs: CVAEOutputs, batch: dict) -> jax.Array:
  """-log (1/S) sum_s p(y | x, z_s), z_s ~ p(z | x): [batch] nats; S is the
  forward's `prior_samples`. At S > 1 this is the importance-sampling bound
  with the prior as proposal (the p/q weights cancel)."""
  log_likelihoods = estimators.batch_log_likelihood(  # [S, batch]
      outputs.prior_likelihood, batch)
  if log_likelihoods.shape[0] == 1:
    return -log_likelihoods[0]
  return -estimators.log_mean_exp(log_likelihoods)


def baseline_negative_log_likelihood_from_outputs(outputs: CVAEOutputs,
                                                  batch: dict) -> jax.Array:
  """-log p(y | x) of the model's own baseline net, [batch] nats."""
  return -estimators.batch_log_likelihood(outputs.baseline, batch)


# The same objectives as (model, params, batch, rng) functions: one forward.

def _check_samples(num_samples) -> None:
  if not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")


def negative_elbo(model: nn.Module, params, batch: dict,
                  rng: jax.Array) -> NegativeElbo:
  """Single-sample negative ELBO of each example, reparameterised.

  -ELBO = E_q[-log p(y | x, z)] + KL(q(z | x, y) || p(z | x)).
  With grey-level targets the reconstruction term is PyTorch's summed
  `binary_cross_entropy`, as in the reference CVAE.
  """
  return negative_elbo_from_outputs(forward(model, params, batch, rng), batch)


def target_log_likelihood(model: nn.Module, params, batch: dict,
                          z: jax.Array) -> jax.Array:
  """log p(y | x, z): over the masked pixels of y (Bernoulli), or the density
  of y (a Gaussian generation net).

  Args:
    z: [..., batch, latent]; leading sample axes are allowed.

  Returns:
    [..., batch] in nats, summed over the target's non-batch axes.
  """
  likelihood = model.apply(params, z, batch["condition"], method="generation")
  return estimators.batch_log_likelihood(likelihood, batch)


def gsnn_negative_log_likelihood(model: nn.Module, params, batch: dict,
                                 rng: jax.Array,
                                 num_samples: int = 1) -> jax.Array:
  """The GSNN objective -log (1/S) sum_s p(y | x, z_s), z_s ~ p(z | x);
  [batch] nats.

  With S = 1 (the paper's) it is a single-sample estimate of
  E_p(z|x)[-log p(y | x, z)], which is best served by a generation net that
  ignores z. With S > 1 it is the importance-sampling bound with the prior as
  proposal: still an upper bound on -log p(y | x) in expectation (Jensen),
  tighter as S grows, and it rewards a z that explains y. There is no KL
  term: the recognition net is unused.
  """
  return per_example_objective("gsnn", model, gsnn_samples=num_samples)(
      params, batch, rng)


def hybrid_objective(model: nn.Module, params, batch: dict, rng: jax.Array,
                     alpha: float, gsnn_samples: int = 1) -> jax.Array:
  """alpha * (-ELBO) + (1 - alpha) * GSNN objective (with `gsnn_samples`
  prior samples); [batch] nats.

  Both terms use the same `rng` (common random numbers), so alpha = 1 gives
  `negative_elbo(...).loss` and alpha = 0 `gsnn_negative_log_likelihood`
  exactly. One forward: the decoder runs once over the posterior's and the
  prior's z together.
  """
  return per_example_objective("hybrid", model, alpha, gsnn_samples)(
      params, batch, rng)


def baseline_negative_log_likelihood(model: nn.Module, params,
                                     batch: dict) -> jax.Array:
  """-log p(y | x) of a deterministic net x -> likelihood (Bernoulli pixels,
  or a Gaussian / Gaussian mixture over y, e.g. a box regressor or a
  mixture density network: exact); [batch] nats."""
  return -estimators.batch_log_likelihood(
      model.apply(params, batch["condition"]), batch)


def mean_negative_elbo(model: nn.Module, params, batch: dict, rng: jax.Array,
                       num_samples: int) -> jax.Array:
  """-ELBO averaged over `num_samples` z ~ q(z | x, y) (what Pyro's
  `Trace_ELBO(num_particles=num_samples)` reports); [batch] nats."""
  keys = jax.random.split(rng, num_samples)
  losses = jax.lax.map(
      lambda key: negative_elbo(model, params, batch, key).loss, keys)
  return jnp.mean(losses, axis=0)


OBJECTIVES = ("baseline", "cvae", "gsnn", "hybrid")


def per_example_objective(kind: str, model: nn.Module, alpha: float = 0.5,
                          gsnn_samples: int = 1, joint_baseline: bool = False):
  """(params, batch, rng, kl_weight=1.0) -> [batch] nats: what a model of
  `kind` minimises; `kl_weight` scales the KL term of the CVAE and the
  hybrid (KL warm-up; see `negative_elbo_from_outputs`).

  Args:
    kind: one of OBJECTIVES: "baseline" (`model` is a deterministic net),
      "cvae", "gsnn" (`gsnn_samples` prior samples inside the log) or
      "hybrid" (alpha * CVAE + (1 - alpha) * GSNN).
    joint_baseline: for the CVAE family, add the -log p(y | x) of the
      model's own baseline net (`baseline_from_features`, trained jointly),
      from the same forward pass.
  """
  if kind == "baseline":
    return lambda params, batch, rng, kl_weight=1.0: (
        baseline_negative_log_likelihood(model, params, batch))
  if kind not in OBJECTIVES:
    raise ValueError(f"kind must be one of {OBJECTIVES}, got {kind!r}")
  _check_samples(gsnn_samples)
  prior_samples = 0 if kind == "cvae" else gsnn_samples

  def objective(params, batch, rng, kl_weight=1.0):
    outputs = forward(model, params, batch, rng, posterior=kind != "gsnn",
                      prior_samples=prior_samples)
    if kind == "cvae":
      loss = negative_elbo_from_outputs(outputs, batch, kl_weight).loss
    elif kind == "gsnn":
      loss = gsnn_from_outputs(outputs, batch)
    else:
      loss = (alpha * negative_elbo_from_outputs(outputs, batch, kl_weight).loss
              + (1.0 - alpha) * gsnn_from_outputs(outputs, batch))
    if joint_baseline:
      loss = loss + baseline_negative_log_likelihood_from_outputs(outputs, batch)
    return loss
  return objective


def objective_settings(kind: str, alpha: float, gsnn_samples: int) -> dict:
  """The settings of objective `kind` its trained parameters depend on: the
  GSNN term's samples (gsnn, hybrid) and the hybrid's alpha."""
  settings = {"gsnn_samples": gsnn_samples} if kind in ("gsnn", "hybrid") else {}
  return {**settings, **({"hybrid_alpha": alpha} if kind == "hybrid" else {})}


def reconstruction_loss(likelihood, batch: dict,
                        top_k_fraction: float = 1.0) -> jax.Array:
  """-log p(y | x, z) [batch] nats; with `top_k_fraction` < 1 (Bernoulli
  pixels only), top-k pixel mining (Kohl et al. 2019): the mean loss of the
  k = ceil(fraction * pixels) worst pixels of each example, times the
  pixels, so it stays on the per-example scale."""
  if top_k_fraction >= 1.0:
    return -estimators.batch_log_likelihood(likelihood, batch)
  logits = getattr(likelihood, "logits", None)
  if logits is None or logits.ndim != 2:
    raise ValueError("top-k pixel mining needs Bernoulli logits [batch, pixels]")
  per_pixel = -distributions.bernoulli_log_likelihood(
      logits[..., None], batch["target"][..., None].astype(logits.dtype))
  count = max(1, math.ceil(top_k_fraction * per_pixel.shape[-1]))
  worst = jax.lax.top_k(per_pixel, count)[0]
  return jnp.mean(worst, axis=-1) * per_pixel.shape[-1]


def model_objective(model: nn.Module, predictor, beta: float = 1.0,
                    likelihood_samples: int = 16, top_k_fraction: float = 1.0):
  """(params, batch, rng, kl_weight=1.0) -> ([batch] nats, {term: [batch]}):
  what any model minimises on {"condition", "target"} batches.

  A `CVAE`: E_q[-log p(y | x, z)] + beta * kl_weight * KL(q || p) with one z
  (Kohl et al.'s objective), plus the -log p(y | x) of its own baseline net
  when it has one (Sohn et al.'s, trained jointly). A model that defines
  `elbo_terms(target, condition, rng) -> (likelihoods, kl [batch])` (a
  hierarchical CVAE, `models.hierarchical`): the sum of its likelihoods'
  reconstruction terms + beta * kl_weight * kl. Both have the terms
  "reconstruction" and "kl" (what GECO constrains, `cvae_jax.geco`), the
  reconstruction over the worst `top_k_fraction` of pixels
  (`reconstruction_loss`). Any other model: -log p(y | x) from its
  `cvae_jax.predictors.Predictor` with `likelihood_samples` draws (exact for
  a deterministic net); no terms.
  """
  weighted = lambda reconstruction, kl, kl_weight: (
      reconstruction + beta * kl_weight * kl,
      {"reconstruction": reconstruction, "kl": kl})
  if callable(getattr(model, "elbo_terms", None)):
    def hierarchical(params, batch, rng, kl_weight=1.0):
      likelihoods, kl = model.apply(params, batch["target"], batch["condition"],
                                    rng, method="elbo_terms")
      return weighted(sum(reconstruction_loss(l, batch, top_k_fraction)
                          for l in likelihoods), kl, kl_weight)
    return hierarchical
  if not isinstance(model, CVAE):
    return lambda params, batch, rng, kl_weight=1.0: (
        -predictor.log_likelihood(params, batch, rng, likelihood_samples), {})

  def cvae(params, batch, rng, kl_weight=1.0):
    outputs = forward(model, params, batch, rng)
    loss, terms = weighted(
        reconstruction_loss(outputs.likelihood, batch, top_k_fraction),
        distributions.kl_diagonal_gaussians(outputs.posterior, outputs.prior),
        kl_weight)
    if outputs.baseline is not None:
      loss = loss + baseline_negative_log_likelihood_from_outputs(outputs, batch)
    return loss, terms
  return cvae


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
