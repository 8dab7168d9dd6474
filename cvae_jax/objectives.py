"""Training objectives: plain jittable functions of (params, batch, rng).

A batch is a dict with `target` (y, [batch, ...]) and `condition` (x, [batch, ...]),
and optionally `target_mask` (broadcasting against the target, 1 where y is to
be predicted: only those pixels are counted, other values weight them). The
model is any CVAE module of `cvae_jax.models` (recognition / prior /
generation methods). The likelihood is set by what the generation (or
baseline) net returns (`distributions.log_likelihood`): logits give a
Bernoulli over every non-batch axis of the target (a [batch, pixels] vector
or a [batch, H, W] mask alike); a `DiagonalGaussian` or `GaussianMixture`
gives a continuous density over the target's last axis (e.g. [batch, 4] box
coordinates). Per-example values are in nats.

The objectives of Sohn et al. (2015), each to be minimised:
  CVAE    -ELBO = E_q(z|x,y)[-log p(y | x, z)] + KL(q(z | x, y) || p(z | x))
  GSNN    E_p(z|x)[-log p(y | x, z)]   (q = p: no KL term), or its S-sample
          version -log (1/S) sum_s p(y | x, z_s), z_s ~ p(z | x)
  hybrid  alpha * CVAE + (1 - alpha) * GSNN
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax import distributions, estimators  # (estimators imports this module too)


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
  """log p(y | x, z): over the masked pixels of y (Bernoulli logits), or the
  density of y (a Gaussian generation net).

  Args:
    z: [..., batch, latent]; leading sample axes are allowed.

  Returns:
    [..., batch] in nats, summed over the target's non-batch axes.
  """
  output = model.apply(params, z, batch["condition"], method="generation")
  return distributions.log_likelihood(
      output, batch["target"], batch.get("target_mask"),
      event_ndim=batch["target"].ndim - 1)


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
  if not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
  prior = model.apply(params, batch["condition"], method="prior")
  if num_samples == 1:
    z = distributions.sample_gaussian(rng, prior)
    return -target_log_likelihood(model, params, batch, z)
  # The library's one estimator, prior as proposal, all S samples in one
  # differentiable call (reparameterised z; the p/q weight terms cancel).
  return -estimators.importance_sampled_log_likelihood(
      lambda z: target_log_likelihood(model, params, batch, z), prior, prior,
      rng, num_samples, chunk_size=num_samples,
      rows_per_slice=num_samples * len(batch["target"]))


def hybrid_objective(model: nn.Module, params, batch: dict, rng: jax.Array,
                     alpha: float, gsnn_samples: int = 1) -> jax.Array:
  """alpha * (-ELBO) + (1 - alpha) * GSNN objective (with `gsnn_samples`
  prior samples); [batch] nats.

  Both terms use the same `rng` (common random numbers), so alpha = 1 gives
  `negative_elbo(...).loss` and alpha = 0 `gsnn_negative_log_likelihood`
  exactly.
  """
  cvae = negative_elbo(model, params, batch, rng).loss
  gsnn = gsnn_negative_log_likelihood(model, params, batch, rng, gsnn_samples)
  return alpha * cvae + (1.0 - alpha) * gsnn


def baseline_negative_log_likelihood(model: nn.Module, params,
                                     batch: dict) -> jax.Array:
  """-log p(y | x) of a deterministic net x -> logits (or a Gaussian /
  Gaussian mixture over y, e.g. a box regressor or a mixture density
  network: exact); [batch] nats."""
  output = model.apply(params, batch["condition"])
  return -distributions.log_likelihood(
      output, batch["target"], batch.get("target_mask"))


MODEL_KINDS = ("baseline", "cvae", "gsnn", "hybrid")


def per_example_objective(kind: str, model: nn.Module, alpha: float = 0.5,
                          gsnn_samples: int = 1, baseline: nn.Module | None = None):
  """(params, batch, rng) -> [batch] nats: what a model of `kind` minimises.

  Args:
    kind: one of MODEL_KINDS: "baseline" (`model` is a deterministic net),
      "cvae", "gsnn" (`gsnn_samples` prior samples inside the log) or
      "hybrid" (alpha * CVAE + (1 - alpha) * GSNN).
    baseline: for the CVAE family, a baseline module whose own
      -log p(y | x) is added, with the parameters under
      params["params"]["baseline"] (a baseline trained jointly); None: nothing
      is added.
  """
  if kind == "baseline":
    return lambda params, batch, rng: baseline_negative_log_likelihood(
        model, params, batch)
  objective = {
      "cvae": lambda p, b, r: negative_elbo(model, p, b, r).loss,
      "gsnn": lambda p, b, r: gsnn_negative_log_likelihood(
          model, p, b, r, gsnn_samples),
      "hybrid": lambda p, b, r: hybrid_objective(model, p, b, r, alpha,
                                                 gsnn_samples),
  }[kind]
  if baseline is None:
    return objective

  def with_baseline(params, batch, rng):
    baseline_params = {"params": params["params"]["baseline"]}
    return objective(params, batch, rng) + baseline_negative_log_likelihood(
        baseline, baseline_params, batch)
  return with_baseline


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
