"""Bounding-box prediction: a box y = (cx, cy, w, h), normalised by the image
side, from an image x (and, in the "class" variant, a class c).

The condition is a dict {"image": [batch, H, W, C], "class": [batch] int32};
the class is read only when `num_classes` > 0 (embedded, then joined to the
image features). Every net starts with the same `ImageEncoder` (convs on the
image plus two coordinate channels, so features know where they are, then a
dense layer).

* `BoxRegressor`: x -> one diagonal Gaussian over y (mean and variance
  learned): a point prediction with an exact likelihood.
* `BoxMixtureDensityNet`: x -> a mixture of `num_components` diagonal
  Gaussians over y (an MDN, Bishop 1994); exact likelihood.
* `BoxCVAE`: one encoder of x shared by the prior p(z | x), the recognition
  net q(z | x, y) and the generation net p(y | x, z), a diagonal Gaussian
  over y. Its methods are the library's CVAE interface.

Variances are bounded below by `min_std` (in normalised units; 0.005 is a
third of a pixel at 64 x 64): the true boxes are points, so without a floor
the density of a box could grow without bound. Every model has the same
floor, so their likelihoods compare.

The CVAE's p(y | x, z) has a *fixed* std, `box_std` (0.02, 1.3 px at 64 x
64; 0 = learned like the others). Measured on the offline set: with a
learned variance the generation net settles early on the average box with a
wide variance, whose small 1 / var scales down the gradient that would teach
it to use z, and the CVAE collapses to about one box per canvas (the
"cvae, learned std" row of benchmarks/bbox_table.py). Two smaller aids to
the same end: y is embedded by its own dense layer before it meets the image
features in q(z | x, y), and q starts narrow (`_narrow_posterior_bias`).
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import DiagonalGaussian, GaussianMixture
from cvae_jax.errors import ConfigError, require_positive_ints, require_range
from cvae_jax.models.cvae import CVAE
from cvae_jax.models.segmentation import ConvEncoder

__all__ = ["BOX_SIZE", "with_coordinates", "ImageEncoder", "GaussianHead",
           "BoxRegressor", "BoxMixtureDensityNet", "BoxCVAE", "check_network"]

BOX_SIZE = 4  # (cx, cy, w, h)
_INITIAL_STD = 0.1  # Of every Gaussian over boxes at initialisation.


def check_network(net) -> None:
  """ConfigError naming the field of a `network` config block (see
  train/configs/bbox.py) that cannot work."""
  require_positive_ints(net, (
      "features", "hidden", "latent", "num_components", "first_stride"), "network.")
  for name in ("cvae_box_std", "mdn_box_std"):  # 0: learned.
    require_range(net, name, 0.0, 0.1, "network.", high_open=True)
  require_range(net, "min_std", 0.0, 0.1, "network.", low_open=True, high_open=True)
  if not len(net.channels) == len(net.kernels) == len(net.pools):
    raise ConfigError("network.channels, network.kernels and network.pools need "
                      "one entry per conv each")


def with_coordinates(images: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H, W, C + 2]: adds the x and y of each pixel in [0, 1]."""
  batch, height, width, _ = images.shape
  ys, xs = jnp.meshgrid(jnp.linspace(0.0, 1.0, height), jnp.linspace(0.0, 1.0, width),
                        indexing="ij")
  grid = jnp.broadcast_to(jnp.stack([xs, ys], -1), (batch, height, width, 2))
  return jnp.concatenate([images, grid.astype(images.dtype)], axis=-1)


class ImageEncoder(nn.Module):
  """{"image", "class"} -> [batch, features]: convs (ReLU, max pooling), then
  a dense ReLU layer over the flattened map and the class embedding."""

  channels: Sequence[int]
  kernels: Sequence[int]
  pools: Sequence[int]
  first_stride: int
  features: int
  num_classes: int = 0  # 0: the class is not part of the condition.
  class_features: int = 16

  @nn.compact
  def __call__(self, condition: dict) -> jax.Array:
    image = condition["image"]
    h = ConvEncoder(self.channels, self.kernels, self.pools, self.first_stride)(
        with_coordinates(image))
    h = h.reshape(h.shape[0], -1)
    if self.num_classes:
      h = jnp.concatenate(
          [h, nn.Embed(self.num_classes, self.class_features)(condition["class"])], -1)
    return nn.relu(nn.Dense(self.features)(h))


class GaussianHead(nn.Module):
  """[..., features] -> a DiagonalGaussian over `event` coordinates (times
  `copies`: fields [..., copies, event] when copies > 0) with std >= min_std,
  or std = fixed_std when that is > 0."""

  event: int
  min_std: float
  copies: int = 0
  fixed_std: float = 0.0

  @nn.compact
  def __call__(self, h: jax.Array) -> DiagonalGaussian:
    n = max(self.copies, 1) * self.event
    mean = nn.Dense(n, name="mean")(h)
    raw = nn.Dense(n, name="log_variance")(h)
    floor = 2.0 * math.log(self.min_std)
    shift = 2.0 * math.log(_INITIAL_STD) - floor  # softplus(shift) ~ shift here.
    log_variance = floor + jax.nn.softplus(raw + shift)
    if self.fixed_std:
      log_variance = jnp.full_like(mean, 2.0 * math.log(self.fixed_std))
    if self.copies:
      shape = (*h.shape[:-1], self.copies, self.event)
      mean, log_variance = mean.reshape(shape), log_variance.reshape(shape)
    return DiagonalGaussian(mean, log_variance)


class _EncoderFields(nn.Module):
  """Fields every box net shares (the encoder's, and the heads')."""

  channels: Sequence[int] = (16, 32, 32)
  kernels: Sequence[int] = (5, 3, 3)
  pools: Sequence[int] = (2, 2, 1)
  first_stride: int = 2
  features: int = 128
  hidden: int = 128
  num_classes: int = 0
  min_std: float = 0.005

  def make_encoder(self, name: str = "encoder") -> ImageEncoder:
    return ImageEncoder(self.channels, self.kernels, self.pools, self.first_stride,
                        self.features, self.num_classes, name=name)


class BoxRegressor(_EncoderFields):
  """condition -> DiagonalGaussian over the box, fields [batch, 4]."""

  @nn.compact
  def __call__(self, condition: dict) -> DiagonalGaussian:
    h = nn.relu(nn.Dense(self.hidden)(self.make_encoder()(condition)))
    return GaussianHead(BOX_SIZE, self.min_std)(h)


class BoxMixtureDensityNet(_EncoderFields):
  """condition -> GaussianMixture over the box: logits [batch, K], component
  fields [batch, K, 4]."""

  num_components: int = 5
  box_std: float = 0.0  # Fixed std of every component; 0: learned (>= min_std).

  log_likelihood_label = "exact"

  @nn.compact
  def __call__(self, condition: dict) -> GaussianMixture:
    h = nn.relu(nn.Dense(self.hidden)(self.make_encoder()(condition)))
    return GaussianMixture(
        nn.Dense(self.num_components, name="logits")(h),
        GaussianHead(BOX_SIZE, self.min_std, self.num_components,
                     fixed_std=self.box_std)(h))

  # The prediction protocol (`cvae_jax.predictors`): one prediction is one
  # component, drawn from the mixture weights.
  def sample_predictions(self, condition: dict, rng: jax.Array,
                         num_samples: int) -> DiagonalGaussian:
    """S drawn components, fields [S, batch, 4]."""
    mixture = self(condition)
    k = jax.random.categorical(rng, mixture.logits,
                               shape=(num_samples, *mixture.logits.shape[:-1]))
    pick = lambda field: jnp.take_along_axis(field[None], k[..., None, None],
                                             axis=2)[:, :, 0]
    return DiagonalGaussian(pick(mixture.components.mean),
                            pick(mixture.components.log_variance))

  def point_prediction(self, condition: dict) -> GaussianMixture:
    """The whole mixture, batch [batch]."""
    return self(condition)

  def log_likelihood(self, target: jax.Array, condition: dict, rng: jax.Array,
                     num_samples: int) -> jax.Array:
    """[batch] exact log p(box | x) in nats."""
    del rng, num_samples
    return self(condition).log_prob(target)


def _narrow_posterior_bias(key, shape, dtype=jnp.float32):
  """Bias of q(z | x, y)'s [mean, log variance] output: 0, then -4 (std
  0.14), so that z starts out carrying y rather than noise."""
  del key
  half = shape[-1] // 2
  return jnp.concatenate([jnp.zeros(half, dtype),
                          jnp.full(shape[-1] - half, -4.0, dtype)])


class BoxCVAE(_EncoderFields, CVAE):
  """The CVAE over boxes; the encoder of x is shared by all three nets."""

  latent: int = 2
  box_std: float = 0.02  # Fixed std of p(y | x, z); 0: learned (>= min_std).

  def setup(self):
    self.encoder = self.make_encoder()
    self.prior_net = nn.Sequential([nn.Dense(self.hidden), nn.relu,
                                    nn.Dense(2 * self.latent)])
    self.recognition_net = nn.Sequential([
        nn.Dense(self.hidden), nn.relu,
        nn.Dense(2 * self.latent, bias_init=_narrow_posterior_bias)])
    self.target_embedding = nn.Dense(self.features)
    self.generation_net = nn.Sequential([nn.Dense(self.hidden), nn.relu,
                                         nn.Dense(self.hidden), nn.relu])
    self.box_head = GaussianHead(BOX_SIZE, self.min_std, fixed_std=self.box_std)

  @staticmethod
  def _gaussian(out: jax.Array) -> DiagonalGaussian:
    mean, log_variance = jnp.split(out, 2, axis=-1)
    return DiagonalGaussian(mean, log_variance)

  def encode(self, condition: dict) -> jax.Array:
    """The shared encoder's features of x, [batch, features]."""
    return self.encoder(condition)

  def prior_from_features(self, h: jax.Array) -> DiagonalGaussian:
    """p(z | x); fields [batch, latent]."""
    return self._gaussian(self.prior_net(h))

  def recognition_from_features(self, target: jax.Array,
                                h: jax.Array) -> DiagonalGaussian:
    """q(z | x, y), target [batch, 4]; fields [batch, latent]."""
    y = nn.relu(self.target_embedding(target))
    return self._gaussian(self.recognition_net(jnp.concatenate([h, y], -1)))

  def generation_from_features(self, z: jax.Array, h: jax.Array) -> DiagonalGaussian:
    """p(y | x, z) from z [..., batch, latent]; fields [..., batch, 4]."""
    h = jnp.broadcast_to(h, (*z.shape[:-1], h.shape[-1]))
    return self.box_head(self.generation_net(jnp.concatenate([h, z], -1)))
