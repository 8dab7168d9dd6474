"""The Probabilistic U-Net (Kohl et al. 2018) and the deterministic U-Net it
is built on, from the same blocks.

Images x are [batch, H, W, C]; a segmentation y is a binary [batch, H, W]
mask. Predictions are Bernoulli logits, returned flat as [..., batch, H * W]
so the library's objectives and estimators apply unchanged.

* `UNet`: len(channels) blocks of `convs_per_block` 3x3 convs (ReLU) with
  `channels[i]` channels, 2x2 average pooling between blocks; an up path of
  x2 bilinear upsampling, concatenation with the down path's features at that
  scale and `convs_per_block` convs; returns the last feature map
  [batch, H, W, channels[0]]. `DeterministicUNet` adds a 1x1 conv to the
  logits.
* `ProbabilisticUNet`: recognition q(z | x, y) and prior p(z | x) are each an
  encoder like the U-Net's down path (own weights; the posterior's input is
  [x, y]), global average pooling, and a 1x1 conv to the mean and log-variance
  of an axis-aligned Gaussian over z ([batch, latent]); generation broadcasts
  z over the U-Net's last feature map, concatenates, and "fcomb" combines them
  with `fcomb_convs` 1x1 convs (ReLU) and a 1x1 output conv. The U-Net runs
  once per call, however many z samples it is given.

Numerically safe variances: the heads' log-variance is soft-clipped to
[-`log_variance_bound`, +`log_variance_bound`] (smooth, identity in the
middle), so exp never overflows to inf or underflows to a zero scale: the NaN
losses users of other implementations report come from an unbounded
exp(log sigma). The heads start at zero (q = p = N(0, I)).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import Bernoulli, DiagonalGaussian
from cvae_jax.errors import ConfigError, require_positive_ints
from cvae_jax.models.cvae import CVAE

__all__ = ["check_halvings", "soft_clip", "DownPath", "UNet", "DeterministicUNet", "GaussianEncoder",
           "ProbabilisticUNet", "check_network"]


def check_network(net, image_size: int) -> None:
  """ConfigError naming the field when the `network` config block (see
  train/configs/prob_unet.py) cannot segment image_size x image_size images."""
  require_positive_ints(net, ("latent_size", "convs_per_block"), "network.")
  if not net.channels or min(net.channels) <= 0:
    raise ConfigError("network.channels must be positive channel counts, one "
                      f"per U-Net block, got {tuple(net.channels)}; "
                      "set --config.network.channels")
  check_halvings(image_size, len(net.channels), "network.channels")
  if net.fcomb_convs < 0:
    raise ConfigError("network.fcomb_convs must be >= 0; set "
                      "--config.network.fcomb_convs")


def check_halvings(image_size: int, levels: int, field: str) -> None:
  """ConfigError unless image_size can be halved by `levels` - 1 poolings
  (`field`, e.g. "network.channels", sets the levels)."""
  halvings = levels - 1
  if image_size % 2 ** halvings:
    raise ConfigError(
        f"image_size={image_size} cannot be halved {halvings} times by "
        f"{levels} levels; set --config.image_size to a multiple of "
        f"{2 ** halvings} or use fewer {field}")


def soft_clip(x: jax.Array, bound: float) -> jax.Array:
  """Smoothly maps x into (-bound, bound); ~x when |x| << bound."""
  return bound * jnp.tanh(x / bound)


def _flatten_batch(x: jax.Array, event_ndim: int = 3):
  lead = x.shape[:-event_ndim]
  return x.reshape(-1, *x.shape[-event_ndim:]), lead


class DownPath(nn.Module):
  """[N, H, W, C] -> the feature map of every block, finest first."""

  channels: Sequence[int]
  convs_per_block: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    features = []
    for i, c in enumerate(self.channels):
      if i:
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      for _ in range(self.convs_per_block):
        x = nn.relu(nn.Conv(c, (3, 3), padding="SAME")(x))
      features.append(x)
    return features


class UNet(nn.Module):
  """[..., H, W, C] -> the U-Net's last feature map [..., H, W, channels[0]]."""

  channels: Sequence[int]
  convs_per_block: int = 3

  @nn.compact
  def __call__(self, condition: jax.Array) -> jax.Array:
    x, lead = _flatten_batch(condition)
    skips = DownPath(self.channels, self.convs_per_block, name="down")(x)
    x = skips[-1]
    for i in reversed(range(len(self.channels) - 1)):
      skip = skips[i]
      x = jax.image.resize(x, (x.shape[0], *skip.shape[1:3], x.shape[-1]),
                           "bilinear")
      x = jnp.concatenate([x, skip], axis=-1)
      for j in range(self.convs_per_block):
        x = nn.relu(nn.Conv(self.channels[i], (3, 3), padding="SAME",
                            name=f"up_{i}_{j}")(x))
    return x.reshape(*lead, *x.shape[1:])


class DeterministicUNet(nn.Module):
  """The U-Net with a 1x1 output conv: x -> Bernoulli, logits [..., H * W]."""

  channels: Sequence[int]
  convs_per_block: int = 3

  @nn.compact
  def __call__(self, condition: jax.Array) -> Bernoulli:
    features = UNet(self.channels, self.convs_per_block, name="unet")(condition)
    logits = nn.Conv(1, (1, 1), name="output")(features)
    return Bernoulli(logits.reshape(*logits.shape[:-3], -1))


class GaussianEncoder(nn.Module):
  """Down path, global average pooling, 1x1 conv -> DiagonalGaussian with
  fields [batch, latent]."""

  channels: Sequence[int]
  latent_size: int
  convs_per_block: int = 3
  log_variance_bound: float = 10.0

  @nn.compact
  def __call__(self, x: jax.Array) -> DiagonalGaussian:
    features = DownPath(self.channels, self.convs_per_block, name="down")(x)[-1]
    pooled = jnp.mean(features, axis=(1, 2))  # = a 1x1 conv after pooling.
    out = nn.Dense(2 * self.latent_size, kernel_init=nn.initializers.zeros,
                   name="head")(pooled)
    mean, log_variance = jnp.split(out, 2, axis=-1)
    return DiagonalGaussian(mean, soft_clip(log_variance, self.log_variance_bound))


class ProbabilisticUNet(CVAE):
  """Kohl et al.'s model with the library's CVAE interface.

  Attributes:
    channels: per U-Net block (also the prior and posterior encoders').
    latent_size: dimension of z (Kohl et al.: 6).
    convs_per_block: 3x3 convs in each block (3).
    fcomb_convs: hidden 1x1 convs of fcomb, each with channels[0] channels,
      before the 1x1 output conv (3).
    log_variance_bound: soft bound on the Gaussians' log-variance.
  """

  channels: Sequence[int]
  latent_size: int = 6
  convs_per_block: int = 3
  fcomb_convs: int = 3
  log_variance_bound: float = 10.0

  def setup(self):
    self.unet = UNet(self.channels, self.convs_per_block)
    encoder = lambda: GaussianEncoder(self.channels, self.latent_size,
                                      self.convs_per_block,
                                      self.log_variance_bound)
    self.prior_net = encoder()
    self.posterior_net = encoder()
    self.fcomb = [nn.Conv(self.channels[0], (1, 1)) for _ in range(self.fcomb_convs)]
    self.fcomb_output = nn.Conv(1, (1, 1))

  def encode(self, condition: jax.Array) -> dict:
    """{"condition": x, "unet": the U-Net's last feature map [batch, H, W, c]}."""
    return {"condition": condition, "unet": self.unet(condition)}

  def recognition_from_features(self, target: jax.Array,
                                features: dict) -> DiagonalGaussian:
    """q(z | x, y): the posterior net on [x, y]; target [batch, H * W] or
    [batch, H, W]. Fields [batch, latent]."""
    condition = features["condition"]
    target = target.reshape(condition.shape[:-1]).astype(condition.dtype)
    return self.posterior_net(jnp.concatenate([condition, target[..., None]], -1))

  def prior_from_features(self, features: dict) -> DiagonalGaussian:
    """p(z | x): sees the image only."""
    return self.prior_net(features["condition"])

  def combine(self, z: jax.Array, features: jax.Array) -> jax.Array:
    """fcomb: z [..., batch, latent] broadcast over features [batch, H, W, c];
    returns logits [..., batch, H * W]."""
    height, width = features.shape[1:3]
    z_map = jnp.broadcast_to(z[..., None, None, :],
                             (*z.shape[:-1], height, width, z.shape[-1]))
    features = jnp.broadcast_to(features, (*z.shape[:-1], *features.shape[1:]))
    x = jnp.concatenate([features, z_map.astype(features.dtype)], axis=-1)
    for conv in self.fcomb:
      x = nn.relu(conv(x))
    logits = self.fcomb_output(x)
    return logits.reshape(*z.shape[:-1], height * width)

  def generation_from_features(self, z: jax.Array, features: dict) -> Bernoulli:
    """p(y | x, z), logits [..., batch, H * W]; the U-Net ran once in `encode`."""
    return Bernoulli(self.combine(z, features["unet"]))
