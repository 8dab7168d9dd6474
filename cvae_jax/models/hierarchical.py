"""Hierarchical segmentation CVAEs: a top-down hierarchy of per-pixel latent
maps (the Hierarchical Probabilistic U-Net, `hpu_net`; PHiSeg, `phiseg`).

Latent level l is a map z_l [batch, h_l, w_l, c_l] with a diagonal Gaussian
per pixel; levels are listed coarsest first, and each level's prior
p(z_l | z_<l, x) and posterior q(z_l | z_<l, x, y) see the coarser levels'
samples. In training the prior is fed the posterior's samples (Kohl et al.
2019; Baumgartner et al. 2019), so the KL is, per level, analytic given the
coarser levels' posterior draws, summed over pixels and channels:

  -ELBO = sum_j w_j (-log p(y | x, z) at output j) + sum_l KL(q_l || p_l)

where the outputs j are the model's likelihoods (one for the HPU-Net; one
per level for PHiSeg, each upsampled to the full image, its last the
model's prediction).

A subclass defines
  prior_pass(condition, rng, inject=None, use_mean=False)
      -> (priors, zs, likelihoods): the prior's Gaussians (coarsest first),
         the z used at each level (drawn, their means, or `inject`ed) and
         the likelihoods (Bernoulli logits [batch, H * W]), last = prediction;
  posterior_pass(target, condition, rng) -> (posteriors, zs).
This base gives the predictor protocol (`cvae_jax.predictors`) from them:
`sample_predictions` (z drawn top-down from the prior), `point_prediction`
(the prior's mean at every level), `log_likelihood` (importance sampling
from q(z | x, y), the whole hierarchy drawn per sample) and `elbo_terms`, the
training objective's terms (`objectives.model_objective`).

Per call, conditions are tiled over the samples along the batch axis, so S
samples of B images are one batch of S * B through the nets.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import (Bernoulli, DiagonalGaussian,
                                    bernoulli_log_likelihood, gaussian_log_density,
                                    kl_diagonal_gaussians, sample_gaussian)
from cvae_jax.estimators import log_mean_exp
from cvae_jax.models.prob_unet import soft_clip

__all__ = ["ResBlock", "ResDownPath", "upsample", "LatentHead", "HierarchicalCVAE",
           "tile", "draw"]


class ResBlock(nn.Module):
  """Pre-activation residual block: `convs` 3x3 convs (ReLU before each) on
  the residual branch, a 1x1 conv on the skip when the channels change."""

  channels: int
  convs: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    skip = x if x.shape[-1] == self.channels else nn.Conv(
        self.channels, (1, 1), name="skip")(x)
    for _ in range(self.convs):
      x = nn.Conv(self.channels, (3, 3), padding="SAME")(nn.relu(x))
    return skip + x


class ResDownPath(nn.Module):
  """[N, H, W, C] -> the features of every level, finest first: at level i,
  `blocks` ResBlocks of channels[i] (after a 2x2 average pool for i > 0)."""

  channels: Sequence[int]
  blocks: int = 1
  convs: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    features = []
    for i, c in enumerate(self.channels):
      if i:
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      for _ in range(self.blocks):
        x = ResBlock(c, self.convs)(x)
      features.append(x)
    return features


def upsample(x: jax.Array, like: jax.Array) -> jax.Array:
  """x [N, h, w, c] resized (bilinear) to like's height and width."""
  return jax.image.resize(x, (x.shape[0], *like.shape[1:3], x.shape[-1]), "bilinear")


class LatentHead(nn.Module):
  """1x1 conv -> a diagonal Gaussian per pixel, fields [N, h, w, latent];
  the log-variance soft-clipped to +-`log_variance_bound`."""

  latent_channels: int
  log_variance_bound: float = 10.0

  @nn.compact
  def __call__(self, x: jax.Array) -> DiagonalGaussian:
    out = nn.Conv(2 * self.latent_channels, (1, 1))(x)
    mean, log_variance = jnp.split(out, 2, axis=-1)
    return DiagonalGaussian(mean, soft_clip(log_variance, self.log_variance_bound))


def tile(x: jax.Array, num_samples: int) -> jax.Array:
  """[B, ...] -> [S * B, ...], sample-major."""
  return jnp.broadcast_to(x, (num_samples, *x.shape)).reshape(-1, *x.shape[1:])


def draw(gaussian: DiagonalGaussian, rng: jax.Array | None,
         use_mean: bool = False) -> jax.Array:
  """One reparameterised draw (or the mean)."""
  return gaussian.mean if use_mean else sample_gaussian(rng, gaussian)


def _sum_over_pixels(x: jax.Array) -> jax.Array:
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def _split_samples(x: jax.Array, num_samples: int) -> jax.Array:
  """[S * B, ...] -> [S, B, ...]."""
  return x.reshape(num_samples, -1, *x.shape[1:])


class HierarchicalCVAE(nn.Module):
  """Base of the hierarchical models; see the module docstring. Subclasses
  set `log_likelihood_chunk` (samples per pass of `log_likelihood`)."""

  log_likelihood_label = "importance-sampled from q(z|x,y), whole hierarchy"
  log_likelihood_chunk = 10

  def prior_pass(self, condition, rng, inject=None, use_mean=False):
    raise NotImplementedError

  def posterior_pass(self, target, condition, rng):
    raise NotImplementedError

  def __call__(self, target: jax.Array, condition: jax.Array):
    """Touches every net (what `init` runs): the posterior and the prior fed
    its means."""
    _, zs = self.posterior_pass(target, condition, jax.random.PRNGKey(0))
    return self.prior_pass(condition, None, inject=zs)[2][-1]

  def elbo_terms(self, target: jax.Array, condition: jax.Array,
                 rng: jax.Array) -> tuple[list, jax.Array]:
    """(likelihoods given one z ~ q (each batch shape [batch]), KL [batch]
    summed over levels, pixels and channels, in nats)."""
    posterior_rng, prior_rng = jax.random.split(rng)
    posteriors, zs = self.posterior_pass(target, condition, posterior_rng)
    priors, _, likelihoods = self.prior_pass(condition, prior_rng, inject=zs)
    kl = sum(_sum_over_pixels(kl_diagonal_gaussians(q, p))
             for q, p in zip(posteriors, priors))
    return likelihoods, kl

  def sample_predictions(self, condition: jax.Array, rng: jax.Array,
                         num_samples: int) -> Bernoulli:
    """Bernoulli logits [S, batch, H * W], z drawn top-down from the prior."""
    likelihood = self.prior_pass(tile(condition, num_samples), rng)[2][-1]
    return Bernoulli(_split_samples(likelihood.logits, num_samples))

  def point_prediction(self, condition: jax.Array) -> Bernoulli:
    """The prediction at the prior's mean of every level (given the coarser
    levels' means)."""
    return self.prior_pass(condition, None, use_mean=True)[2][-1]

  def log_likelihood(self, target: jax.Array, condition: jax.Array,
                     rng: jax.Array, num_samples: int) -> jax.Array:
    """log p(y | x) [batch] nats, importance-sampled: the whole hierarchy z
    drawn from q(z | x, y), weights p(y | x, z) p(z | x) / q(z | x, y) with
    the prior evaluated at the same z; `log_likelihood_chunk` samples per
    pass."""
    weights = []
    for start in range(0, num_samples, self.log_likelihood_chunk):
      count = min(self.log_likelihood_chunk, num_samples - start)
      key = jax.random.fold_in(rng, start)
      y, x = tile(target, count), tile(condition, count)
      posteriors, zs = self.posterior_pass(y, x, jax.random.fold_in(key, 0))
      priors, _, likelihoods = self.prior_pass(x, None, inject=zs)
      log_weight = (bernoulli_log_likelihood(likelihoods[-1].logits, y)
                    + sum(_sum_over_pixels(gaussian_log_density(z, p)
                                           - gaussian_log_density(z, q))
                          for z, p, q in zip(zs, priors, posteriors)))
      weights.append(_split_samples(log_weight, count))
    return log_mean_exp(jnp.concatenate(weights))

