"""PHiSeg (Baumgartner et al. 2019): a hierarchy of latent maps at the finest
resolutions and a likelihood net with one output per level.

Prior (on x) and posterior (on [x, y]) are each a down path of
`convs_per_block` 3x3 convs per resolution level (channels[i] at level i,
finest first, 2x2 average pooling between levels), an up path from the
coarsest level to the coarsest latent level (upsample, concatenate the down
path's features, convs), then the latent levels top-down: latent level l
(l = 0 is the full resolution; there are `latent_levels`, the finest ones)
takes the down path's features at its resolution concatenated with the
coarser level's z upsampled and convolved, two convs, and a 1x1 conv to a
Gaussian of `latent_channels` per pixel.

The likelihood net, top-down: at each latent level two convs on z_l,
concatenated with the coarser level's features upsampled, two convs, and a
1x1 conv to a logit map that is added to the coarser level's logits
upsampled (residual outputs). Each level's logits, resized to the full image,
is a likelihood; the training loss sums their reconstruction terms (one per
level, each weight 1) and the levels' KLs; the finest level's logits are the
model's prediction.

The published recipe (LIDC, 128 x 128): 7 resolution levels of 32 to 192
channels (32, 64, 128, 192, 192, 192, 192), 3 convs per level (with batch
norm, left out here: the model stays a pure function of its inputs), 5 latent
levels of 2 channels.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import Bernoulli
from cvae_jax.errors import ConfigError, require_positive_ints
from cvae_jax.models.hierarchical import HierarchicalCVAE, LatentHead, draw, upsample
from cvae_jax.models.prob_unet import DownPath, check_halvings

__all__ = ["LatentPath", "LikelihoodNet", "PHiSeg", "check_network"]


def check_network(net, image_size: int) -> None:
  """ConfigError naming the field of the `phiseg_network` config block."""
  require_positive_ints(net, ("latent_levels", "latent_channels",
                              "convs_per_block"), "phiseg_network.")
  levels = len(net.channels)
  if net.latent_levels > levels:
    raise ConfigError(
        f"phiseg_network.latent_levels={net.latent_levels} exceeds the "
        f"{levels} resolution levels of phiseg_network.channels; set "
        "--config.phiseg_network.latent_levels")
  check_halvings(image_size, levels, "phiseg_network.channels")


def _convs(x, channels: int, count: int):
  for _ in range(count):
    x = nn.relu(nn.Conv(channels, (3, 3), padding="SAME")(x))
  return x


class LatentPath(nn.Module):
  """Image (and mask) -> (Gaussians, zs), coarsest latent level first."""

  channels: Sequence[int]
  latent_levels: int
  latent_channels: int = 2
  convs_per_block: int = 3
  log_variance_bound: float = 10.0

  @nn.compact
  def __call__(self, x, rng, inject=None, use_mean=False):
    features = DownPath(self.channels, self.convs_per_block, name="down")(x)
    top = self.latent_levels - 1
    h = features[-1]
    for level in reversed(range(top, len(self.channels) - 1)):  # Context.
      h = _convs(jnp.concatenate([upsample(h, features[level]), features[level]], -1),
                 self.channels[level], self.convs_per_block)
    gaussians, zs = [], []
    for level in reversed(range(self.latent_levels)):
      if level < top:
        coarser = _convs(upsample(zs[-1], features[level]), self.channels[level], 1)
        h = _convs(jnp.concatenate([features[level], coarser], -1),
                   self.channels[level], 2)
      gaussian = LatentHead(self.latent_channels, self.log_variance_bound)(h)
      index = len(zs)
      z = inject[index] if inject is not None else draw(
          gaussian, None if use_mean else jax.random.fold_in(rng, level), use_mean)
      gaussians.append(gaussian)
      zs.append(z)
    return gaussians, zs


class LikelihoodNet(nn.Module):
  """zs (coarsest first) -> one logits map per level, each resized to
  `size` x `size` and flat [N, size * size], residual from the coarser."""

  channels: Sequence[int]

  @nn.compact
  def __call__(self, zs, size: int):
    outputs, h, logits = [], None, None
    for index, z in enumerate(zs):
      level = len(zs) - 1 - index
      p = _convs(z, self.channels[level], 2)
      if h is not None:
        p = _convs(jnp.concatenate([p, upsample(h, p)], -1), self.channels[level], 2)
      h = p
      level_logits = nn.Conv(1, (1, 1))(h)
      logits = level_logits if logits is None else level_logits + upsample(logits, h)
      full = jax.image.resize(logits, (logits.shape[0], size, size, 1),
                              "bilinear")
      outputs.append(Bernoulli(full.reshape(full.shape[0], -1)))
    return outputs


class PHiSeg(HierarchicalCVAE):
  """See the module docstring.

  Attributes:
    channels: per resolution level, finest first.
    latent_levels: latent levels, at the finest resolutions.
    latent_channels: channels of each latent map.
    convs_per_block: 3x3 convs per resolution level of the down paths.
    log_variance_bound: soft bound on the Gaussians' log-variance.
  """

  channels: Sequence[int]
  latent_levels: int = 5
  latent_channels: int = 2
  convs_per_block: int = 3
  log_variance_bound: float = 10.0

  def setup(self):
    path = lambda: LatentPath(self.channels, self.latent_levels,
                              self.latent_channels, self.convs_per_block,
                              self.log_variance_bound)
    self.prior_net, self.posterior_net = path(), path()
    self.likelihood = LikelihoodNet(self.channels)

  def prior_pass(self, condition, rng, inject=None, use_mean=False):
    priors, zs = self.prior_net(condition, rng, inject, use_mean)
    return priors, zs, self.likelihood(zs, condition.shape[1])

  def posterior_pass(self, target, condition, rng):
    mask = target.reshape(condition.shape[:-1])[..., None].astype(condition.dtype)
    return self.posterior_net(jnp.concatenate([condition, mask], -1), rng)
