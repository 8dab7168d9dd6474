"""The Hierarchical Probabilistic U-Net (Kohl et al. 2019).

Two residual U-Nets, the prior's on x and the posterior's on [x, y], each a
down path of `blocks` residual blocks per level (`hierarchical.ResDownPath`,
channels[i] at level i, finest first) and a decoder that starts at the
coarsest level and, at each of its first len(latent_channels) levels
(coarsest first, e.g. 1x1, 2x2, 4x4, 8x8 maps), predicts a Gaussian per
pixel with a 1x1 conv, draws z_l from it (or takes an injected one),
concatenates z_l to its features, upsamples x2, concatenates the down path's
features of that scale and runs residual blocks. The prior's decoder then
continues without latents to the full resolution (the "stitching" decoder
on the prior's own skips) and a 1x1 conv gives the logits; the posterior's
stops after its last latent. In training the prior's decoder is fed the
posterior's z (`hierarchical.HierarchicalCVAE`).

The published recipe (LIDC): 8 levels of channels (24, 48, 96, 192, 192,
192, 192, 192), 3 residual blocks of 3 convs per level, latents of 1 channel
at the 4 coarsest scales, trained with GECO (kappa = 0.05 per pixel) and a
reconstruction over the top 2% of pixels by loss (train/configs/).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import Bernoulli
from cvae_jax.errors import ConfigError, require_positive_ints
from cvae_jax.models.hierarchical import (HierarchicalCVAE, LatentHead, ResBlock,
                                          ResDownPath, draw, upsample)
from cvae_jax.models.prob_unet import check_halvings

__all__ = ["LatentDecoder", "StitchingDecoder", "HierarchicalProbabilisticUNet",
           "check_network"]


def check_network(net, image_size: int) -> None:
  """ConfigError naming the field of the `hpu_network` config block."""
  require_positive_ints(net, ("blocks", "convs_per_block"), "hpu_network.")
  levels, latents = len(net.channels), len(net.latent_channels)
  if not 1 <= latents < levels:
    raise ConfigError(
        f"hpu_network.latent_channels has {latents} levels; it needs 1 to "
        f"{levels - 1} (fewer than the {levels} channels levels); set "
        "--config.hpu_network.latent_channels")
  check_halvings(image_size, levels, "hpu_network.channels")


class LatentDecoder(nn.Module):
  """features (finest first) -> (Gaussians, zs, the decoder's features after
  the last latent level, or None when `continue_after` is False)."""

  channels: Sequence[int]
  latent_channels: Sequence[int]
  blocks: int = 1
  convs: int = 3
  log_variance_bound: float = 10.0
  continue_after: bool = True

  @nn.compact
  def __call__(self, features, rng, inject=None, use_mean=False):
    h, gaussians, zs = features[-1], [], []
    for level, channels in enumerate(self.latent_channels):
      gaussian = LatentHead(channels, self.log_variance_bound)(h)
      z = inject[level] if inject is not None else draw(
          gaussian, None if use_mean else jax.random.fold_in(rng, level), use_mean)
      gaussians.append(gaussian)
      zs.append(z)
      if level == len(self.latent_channels) - 1 and not self.continue_after:
        return gaussians, zs, None
      skip = features[-2 - level]
      h = jnp.concatenate([upsample(jnp.concatenate([h, z], -1), skip), skip], -1)
      for _ in range(self.blocks):
        h = ResBlock(self.channels[-2 - level], self.convs)(h)
    return gaussians, zs, h


class StitchingDecoder(nn.Module):
  """The prior's decoder below its latents: from level `start` (counted from
  the coarsest) up to the full resolution on the prior's skips; logits
  [N, H * W]."""

  channels: Sequence[int]
  start: int
  blocks: int = 1
  convs: int = 3

  @nn.compact
  def __call__(self, h, features):
    for level in range(self.start, len(self.channels) - 1):
      skip = features[-2 - level]
      h = jnp.concatenate([upsample(h, skip), skip], -1)
      for _ in range(self.blocks):
        h = ResBlock(self.channels[-2 - level], self.convs)(h)
    logits = nn.Conv(1, (1, 1), name="logits")(nn.relu(h))
    return logits.reshape(logits.shape[0], -1)


class HierarchicalProbabilisticUNet(HierarchicalCVAE):
  """See the module docstring.

  Attributes:
    channels: per level, finest first (also the number of levels).
    latent_channels: per latent level, coarsest first.
    blocks: residual blocks per level; convs_per_block: convs in each.
    log_variance_bound: soft bound on the Gaussians' log-variance.
  """

  channels: Sequence[int]
  latent_channels: Sequence[int] = (1, 1, 1, 1)
  blocks: int = 1
  convs_per_block: int = 3
  log_variance_bound: float = 10.0

  def setup(self):
    down = lambda: ResDownPath(self.channels, self.blocks, self.convs_per_block)
    decoder = lambda continue_after: LatentDecoder(
        self.channels, self.latent_channels, self.blocks, self.convs_per_block,
        self.log_variance_bound, continue_after)
    self.prior_down, self.prior_decoder = down(), decoder(True)
    self.posterior_down, self.posterior_decoder = down(), decoder(False)
    self.stitch = StitchingDecoder(self.channels, len(self.latent_channels),
                                   self.blocks, self.convs_per_block)

  def prior_pass(self, condition, rng, inject=None, use_mean=False):
    features = self.prior_down(condition)
    priors, zs, h = self.prior_decoder(features, rng, inject, use_mean)
    return priors, zs, [Bernoulli(self.stitch(h, features))]

  def posterior_pass(self, target, condition, rng):
    mask = target.reshape(condition.shape[:-1])[..., None].astype(condition.dtype)
    features = self.posterior_down(jnp.concatenate([condition, mask], -1))
    posteriors, zs, _ = self.posterior_decoder(features, rng)
    return posteriors, zs
