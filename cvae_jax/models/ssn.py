"""Stochastic Segmentation Networks (Monteiro et al. 2020): no latent, a
low-rank plus diagonal Gaussian over the logits.

A U-Net (`prob_unet.UNet`) maps the image x [batch, H, W, C] to features;
three 1x1 conv heads give, per pixel, the mean mu, the log-variance of the
diagonal D and `rank` columns of the covariance factor P, so the logits
eta [batch, H * W] ~ N(mu, P P^T + D) are correlated across the whole image
through P's `rank` directions. A mask is drawn as y ~ Bernoulli(sigmoid(eta))
pixel-wise; the model's distribution is p(y | x) = E_eta[p(y | eta)].

Draws come in antithetic pairs (eta = mu + e and mu - e with the same
deviation e, as the paper does), halving the variance of the Monte-Carlo
estimates for the same number of U-Net passes (one per call).

The model implements the predictor protocol itself (`cvae_jax.predictors`):
  sample_predictions  Bernoulli logits [S, batch, H * W], one eta each;
  point_prediction    Bernoulli(mu), the distribution's mean logits;
  log_likelihood      log (1/S) sum_s p(y | eta_s) [batch] nats (the
                      paper's training loss, with S = `likelihood_samples`);
                      a consistent estimate of log p(y | x), and a lower
                      bound in expectation (Jensen).
Binary masks use one logit per pixel: the paper's two-class softmax has the
same distributions with one redundant logit.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import Bernoulli, bernoulli_log_likelihood
from cvae_jax.estimators import log_mean_exp
from cvae_jax.errors import ConfigError
from cvae_jax.models.prob_unet import UNet, soft_clip

__all__ = ["LowRankLogits", "StochasticSegmentationNetwork", "check_network"]


def check_network(net) -> None:
  """ConfigError naming the field of the `ssn_network` config block."""
  if not isinstance(net.rank, int) or net.rank < 1:
    raise ConfigError(f"ssn_network.rank must be a positive integer, got "
                      f"{net.rank!r}; set --config.ssn_network.rank")


class LowRankLogits(nn.Module):
  """Features [batch, H, W, c] -> (mean [batch, P], log-variance [batch, P],
  factor [batch, P, rank]) of the logits' Gaussian, P = H * W."""

  rank: int
  log_variance_bound: float = 10.0

  @nn.compact
  def __call__(self, features: jax.Array):
    batch = features.shape[0]
    mean = nn.Conv(1, (1, 1), name="mean")(features).reshape(batch, -1)
    log_variance = nn.Conv(1, (1, 1), name="log_variance")(features)
    # A small factor at the start: training begins near a deterministic net.
    factor = nn.Conv(self.rank, (1, 1), name="factor",
                     kernel_init=nn.initializers.normal(1e-3))(features)
    return (mean, soft_clip(log_variance.reshape(batch, -1), self.log_variance_bound),
            factor.reshape(batch, -1, self.rank))


class StochasticSegmentationNetwork(nn.Module):
  """See the module docstring.

  Attributes:
    channels, convs_per_block: the U-Net's (as the Probabilistic U-Net's).
    rank: columns of the covariance factor (the paper: 10).
    log_variance_bound: soft bound on the diagonal's log-variance.
  """

  channels: Sequence[int]
  convs_per_block: int = 3
  rank: int = 10
  log_variance_bound: float = 10.0
  log_likelihood_label = "Monte Carlo over the logits' Gaussian, antithetic pairs"

  def setup(self):
    self.unet = UNet(self.channels, self.convs_per_block)
    self.heads = LowRankLogits(self.rank, self.log_variance_bound)

  def __call__(self, condition: jax.Array) -> Bernoulli:
    """The point prediction (what `init` runs)."""
    return self.point_prediction(condition)

  def logit_distribution(self, condition: jax.Array):
    """(mean [batch, P], diagonal variance [batch, P], factor [batch, P, rank])."""
    mean, log_variance, factor = self.heads(self.unet(condition))
    return mean, jnp.exp(log_variance), factor

  def draw_logits(self, condition: jax.Array, rng: jax.Array,
                  num_samples: int) -> jax.Array:
    """[S, batch, P] draws of eta, in antithetic pairs (an odd S ends with
    one unpaired draw)."""
    mean, variance, factor = self.logit_distribution(condition)
    half = (num_samples + 1) // 2
    diagonal_rng, factor_rng = jax.random.split(rng)
    noise = jax.random.normal(diagonal_rng, (half, *mean.shape), mean.dtype)
    low_rank = jax.random.normal(factor_rng, (half, mean.shape[0], self.rank),
                                 mean.dtype)
    deviation = (jnp.sqrt(variance) * noise
                 + jnp.einsum("bpr,sbr->sbp", factor, low_rank))
    deviations = jnp.concatenate([deviation, -deviation])[:num_samples]
    return mean + deviations

  def sample_predictions(self, condition: jax.Array, rng: jax.Array,
                         num_samples: int) -> Bernoulli:
    return Bernoulli(self.draw_logits(condition, rng, num_samples))

  def point_prediction(self, condition: jax.Array) -> Bernoulli:
    return Bernoulli(self.logit_distribution(condition)[0])

  def log_likelihood(self, target: jax.Array, condition: jax.Array,
                     rng: jax.Array, num_samples: int) -> jax.Array:
    """log (1/S) sum_s p(y | eta_s), [batch] nats; target [batch, P]."""
    logits = self.draw_logits(condition, rng, num_samples)
    return log_mean_exp(bernoulli_log_likelihood(logits, target))
