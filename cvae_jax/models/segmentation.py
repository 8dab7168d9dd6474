"""Sohn, Lee & Yan (2015)'s convolutional CVAE for segmentation, and its
baseline CNN.

Images x are [batch, H, W, C] in [0, 1]; a segmentation y is a binary
[batch, H, W] mask. Predictions are Bernoulli logits, returned flattened as a
*pyramid*: the full-resolution H*W logits first, then, with
`multiscale_levels` = L > 0, those of the 1/2, ..., 1/2^L scale predictions
(Sohn et al.'s multi-scale prediction objective; `pyramid_size` gives the
length). Flat outputs let the library's objectives and estimators sum the
likelihood over the last axis, and a per-pixel weight vector
(`pyramid_weights`) decides which scales count: all of them in training, the
full resolution only in evaluation.

* `BaselineCNN`: x -> logits, an encoder-decoder CNN (deterministic).
* `SegmentationCVAE`: recognition q(z | x, y) sees [x, y]; the conditional
  prior p(z | x, y_hat) sees [x, y_hat], where y_hat = sigmoid of the baseline's
  logits (the "recurrent" initial guess, through `stop_gradient`); generation
  p(y | x, z) = baseline logits + a correction decoded from [z, features of the
  prior's encoder]. z is a Gaussian *map* [h, w, latent_channels] at the
  encoder's resolution, flattened to [batch, h * w * latent_channels] so that
  the library's Gaussian helpers apply unchanged.

Layer plan (from the authors' CUB code as the issue lists it; where it was
silent, the choices are marked "guess"): each encoder conv (ReLU, same
padding; the first with `first_stride`) is followed by max pooling with its
`pools` entry; the bottleneck (the latent map's conv, or the baseline's middle
conv) uses the last `pools` entry; the decoder upsamples by 2 (nearest
neighbour, guess: "unpooling") before each conv while below full resolution,
and a final conv gives 1 logit channel. The generation net decodes [z, the
prior encoder's features] (guess: sharing the prior's encoder for x).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import Bernoulli, DiagonalGaussian
from cvae_jax.errors import ConfigError
from cvae_jax.models import pooling
from cvae_jax.models.cvae import CVAE

__all__ = ["downsampling_factor", "pyramid_size", "mask_pyramid", "pyramid_weights",
           "full_resolution", "check_network_geometry", "ConvEncoder", "ConvDecoder",
           "BaselineCNN", "SegmentationCVAE", "from_network_config"]


def downsampling_factor(first_stride: int, pools: Sequence[int]) -> int:
  """How much smaller the encoder's output is than the image, per side."""
  factor = first_stride
  for pool in pools:
    factor *= pool
  return factor


def pyramid_size(height: int, width: int, levels: int) -> int:
  """Length of the flat logits: H*W plus the 1/2^l scales, l = 1..levels."""
  return sum((height >> l) * (width >> l) for l in range(levels + 1))


def mask_pyramid(masks: jax.Array, levels: int) -> jax.Array:
  """[..., H, W] masks -> [..., pyramid_size] targets: the mask, then its
  2^l x 2^l average-pooled copies (soft targets in [0, 1])."""
  flat = [masks.reshape(*masks.shape[:-2], -1)]
  height, width = masks.shape[-2:]
  for level in range(1, levels + 1):
    f = 2 ** level
    pooled = masks.reshape(*masks.shape[:-2], height // f, f, width // f, f)
    flat.append(pooled.mean(axis=(-3, -1)).reshape(*masks.shape[:-2], -1))
  return jnp.concatenate(flat, axis=-1)


def pyramid_weights(height: int, width: int, levels: int,
                    coarse_weight: float) -> jax.Array:
  """[pyramid_size] per-logit weights: 1 at full resolution, `coarse_weight`
  on the coarser scales (0 in evaluation: only the prediction counts)."""
  sizes = [(height >> l) * (width >> l) for l in range(levels + 1)]
  return jnp.concatenate([jnp.ones(sizes[0])] + [
      jnp.full(s, coarse_weight) for s in sizes[1:]])


def full_resolution(logits: jax.Array, height: int, width: int) -> jax.Array:
  """[..., pyramid_size] -> [..., H, W], the full-resolution prediction."""
  return logits[..., :height * width].reshape(*logits.shape[:-1], height, width)


def check_network_geometry(net, size: int, multiscale_levels: int) -> None:
  """ConfigError naming the field when the network config `net` (the
  segmentation config's `network` block) cannot map size x size images to
  themselves: kernels per conv, a downsampling factor that divides the size,
  enough decoder convs to upsample back, and the multiscale levels."""
  factor = downsampling_factor(net.first_stride, net.pools)
  if len(net.pools) != len(net.encoder_channels) + 1:
    raise ConfigError(f"network.pools needs one entry per encoder conv and one "
                      f"for the latent conv ({len(net.encoder_channels) + 1}), "
                      f"got {tuple(net.pools)}")
  kernels = {  # field -> (kernels it has, kernels it needs).
      "encoder_kernels": (len(net.encoder_kernels), len(net.encoder_channels)),
      "decoder_kernels": (len(net.decoder_kernels), len(net.decoder_channels) + 1),
      "baseline_kernels": (len(net.baseline_kernels),
                           len(net.baseline_encoder_channels) + 2
                           + len(net.baseline_decoder_channels))}
  for name, (have, need) in kernels.items():
    if have != need:
      raise ConfigError(f"network.{name} needs {need} sizes (one per conv, "
                        f"output conv included), got {have}; set "
                        f"--config.network.{name}")
  if factor & (factor - 1) or size % factor:
    raise ConfigError(
        f"image_size={size} cannot be downsampled evenly by the encoder "
        f"(first_stride x pools = {factor}, which must be a power of 2 that "
        f"divides it); set --config.image_size to a multiple of {factor}")
  steps = factor.bit_length() - 1  # Upsamplings by 2 back to full size.
  for name, convs in (("decoder", net.decoder_channels),
                      ("baseline decoder", net.baseline_decoder_channels)):
    if steps > len(convs) + 1:
      raise ConfigError(f"the {name} has {len(convs)} convs, too few to upsample "
                        f"by {factor}; add channels or lower the pools")
  if not 0 <= multiscale_levels < steps:
    raise ConfigError(f"multiscale_levels must be in 0..{steps - 1} for this "
                      f"network, got {multiscale_levels}")
  if size < 2 ** multiscale_levels:
    raise ConfigError(f"image_size={size} is too small for "
                      f"multiscale_levels={multiscale_levels}")


def _flatten_batch(x: jax.Array, event_ndim: int = 3):
  """[..., H, W, C] -> ([N, H, W, C], leading shape)."""
  lead = x.shape[:-event_ndim]
  return x.reshape(-1, *x.shape[-event_ndim:]), lead


class ConvEncoder(nn.Module):
  """Convs with ReLU, each followed by max pooling; [N, H, W, C] -> [N, h, w, c]."""

  channels: Sequence[int]
  kernels: Sequence[int]
  pools: Sequence[int]
  first_stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, (c, k, pool) in enumerate(zip(self.channels, self.kernels, self.pools)):
      stride = self.first_stride if i == 0 else 1
      x = nn.relu(nn.Conv(c, (k, k), strides=(stride, stride), padding="SAME")(x))
      if pool > 1:
        x = pooling.max_pool(x, pool)
    return x


class ConvDecoder(nn.Module):
  """Upsample x2 (nearest) before each conv while below `height`; a final
  conv to 1 logit; 1x1 heads give the coarse-scale logits.

  Returns:
    [N, pyramid_size(height, width, multiscale_levels)] logits.
  """

  channels: Sequence[int]
  kernels: Sequence[int]  # One per conv, then the output conv's.
  height: int
  width: int
  multiscale_levels: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = {}  # Resolution scale (2^l) -> the last feature map there.

    def upsample(x):
      if x.shape[1] < self.height:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      return x

    for c, k in zip(self.channels, self.kernels):
      x = nn.relu(nn.Conv(c, (k, k), padding="SAME")(upsample(x)))
      features[self.height // x.shape[1]] = x
    x = upsample(x)
    k = self.kernels[len(self.channels)]
    logits = [nn.Conv(1, (k, k), padding="SAME", name="output")(x)]
    for level in range(1, self.multiscale_levels + 1):
      logits.append(nn.Conv(1, (1, 1), name=f"output_scale_{2 ** level}")(
          features[2 ** level]))
    return jnp.concatenate([l.reshape(l.shape[0], -1) for l in logits], axis=-1)


class BaselineCNN(nn.Module):
  """x [..., H, W, C] -> Bernoulli over the mask, logits [..., pyramid_size].

  Sizes of the authors' CUB baseline: encoder 64, 96, 128 (kernels 9, 5, 3),
  middle 128 (kernel 3), decoder 96, 64, 48 (kernels 3, 5, 5), output kernel 5.
  """

  encoder_channels: Sequence[int]
  middle_channels: int
  decoder_channels: Sequence[int]
  kernels: Sequence[int]  # encoder, middle, decoder, output.
  first_stride: int
  pools: Sequence[int]  # One per encoder conv, then the middle conv's.
  height: int
  width: int
  multiscale_levels: int = 0

  @nn.compact
  def __call__(self, condition: jax.Array) -> Bernoulli:
    x, lead = _flatten_batch(condition)
    n = len(self.encoder_channels)
    h = ConvEncoder((*self.encoder_channels, self.middle_channels),
                    self.kernels[:n + 1], self.pools, self.first_stride,
                    name="encoder")(x)
    logits = ConvDecoder(self.decoder_channels, self.kernels[n + 1:],
                         self.height, self.width, self.multiscale_levels,
                         name="decoder")(h)
    return Bernoulli(logits.reshape(*lead, -1))


class SegmentationCVAE(CVAE):
  """Sohn et al.'s conv CVAE with a baseline CNN; see the module docstring.

  Attributes:
    encoder_channels / encoder_kernels: the recognition and prior encoders.
    latent_channels / latent_kernel: the Gaussian latent map's conv.
    decoder_channels / decoder_kernels: the generation net (kernels: one per
      conv, then the output conv's).
    first_stride / pools: downsampling; `pools` has one entry per encoder
      conv, then the latent conv's.
    baseline: the `BaselineCNN` fields, as a dict.
    height / width: image size; must divide by `downsampling_factor`.
    multiscale_levels: coarse predictions at 1/2 ... 1/2^L (0: off).
  """

  encoder_channels: Sequence[int]
  encoder_kernels: Sequence[int]
  latent_channels: int
  latent_kernel: int
  decoder_channels: Sequence[int]
  decoder_kernels: Sequence[int]
  first_stride: int
  pools: Sequence[int]
  baseline_encoder_channels: Sequence[int]
  baseline_middle_channels: int
  baseline_decoder_channels: Sequence[int]
  baseline_kernels: Sequence[int]
  height: int
  width: int
  multiscale_levels: int = 0

  def setup(self):
    self.baseline = BaselineCNN(
        self.baseline_encoder_channels, self.baseline_middle_channels,
        self.baseline_decoder_channels, self.baseline_kernels,
        self.first_stride, self.pools, self.height, self.width,
        self.multiscale_levels)
    encoder_pools = self.pools[:len(self.encoder_channels)]
    self.recognition_encoder = ConvEncoder(
        self.encoder_channels, self.encoder_kernels, encoder_pools,
        self.first_stride)
    self.prior_encoder = ConvEncoder(
        self.encoder_channels, self.encoder_kernels, encoder_pools,
        self.first_stride)
    latent_conv = lambda: nn.Conv(2 * self.latent_channels,
                                  (self.latent_kernel,) * 2, padding="SAME")
    self.recognition_head = latent_conv()
    self.prior_head = latent_conv()
    self.decoder = ConvDecoder(self.decoder_channels, self.decoder_kernels,
                               self.height, self.width, self.multiscale_levels)

  def _encode(self, encoder, inputs: jax.Array) -> jax.Array:
    """Encoder features at the latent map's resolution, [batch, h, w, c]."""
    features = encoder(inputs)
    pool = self.pools[len(self.encoder_channels)]
    if pool > 1:
      features = pooling.max_pool(features, pool)
    return features

  def _gaussian_map(self, head, features: jax.Array) -> DiagonalGaussian:
    """Fields [batch, h * w * latent_channels]."""
    out = head(features).reshape(features.shape[0], -1, 2 * self.latent_channels)
    mean, log_variance = jnp.split(out, 2, axis=-1)
    return DiagonalGaussian(mean.reshape(features.shape[0], -1),
                            log_variance.reshape(features.shape[0], -1))

  def initial_guess(self, baseline_logits: jax.Array) -> jax.Array:
    """y_hat [batch, H, W, 1]: the baseline's predicted mask probabilities,
    without gradient (the baseline learns from its own loss)."""
    logits = jax.lax.stop_gradient(baseline_logits)
    return jax.nn.sigmoid(full_resolution(logits, self.height, self.width))[..., None]

  def encode(self, condition: jax.Array) -> dict:
    """{"condition": x, "baseline": the baseline's logits [batch,
    pyramid_size], "prior": the prior encoder's features of [x, y_hat]
    [batch, h, w, c]}: each net on x runs once per batch."""
    baseline = self.baseline(condition).logits
    prior_features = self._encode(self.prior_encoder, jnp.concatenate(
        [condition, self.initial_guess(baseline)], axis=-1))
    return {"condition": condition, "baseline": baseline, "prior": prior_features}

  def recognition_from_features(self, target: jax.Array,
                                features: dict) -> DiagonalGaussian:
    """q(z | x, y); target is the [batch, pyramid_size] (or [batch, H, W])
    mask, of which the full resolution is used. Fields [batch, latent]."""
    condition = features["condition"]
    if target.ndim == 2:
      target = full_resolution(target, self.height, self.width)
    inputs = jnp.concatenate([condition, target[..., None].astype(condition.dtype)],
                             axis=-1)
    return self._gaussian_map(
        self.recognition_head, self._encode(self.recognition_encoder, inputs))

  def prior_from_features(self, features: dict) -> DiagonalGaussian:
    """p(z | x, y_hat): sees the image and the baseline's guess, never y."""
    return self._gaussian_map(self.prior_head, features["prior"])

  def correction(self, z: jax.Array, features: dict) -> jax.Array:
    """The generation net's own logits, [..., batch, pyramid_size], from
    z [..., batch, latent] and the prior encoder's features of x."""
    prior_features = features["prior"]  # [batch, h, w, c]
    z_map = z.reshape(*z.shape[:-1], *prior_features.shape[1:3],
                      self.latent_channels)
    prior_features = jnp.broadcast_to(
        prior_features, (*z_map.shape[:-1], prior_features.shape[-1]))
    inputs, lead = _flatten_batch(jnp.concatenate([z_map, prior_features], axis=-1))
    return self.decoder(inputs).reshape(*lead, -1)

  def generation_from_features(self, z: jax.Array, features: dict) -> Bernoulli:
    """p(y | x, z): logits = baseline logits + the correction,
    [..., batch, pyramid_size]."""
    return Bernoulli(features["baseline"] + self.correction(z, features))

  def baseline_from_features(self, features: dict) -> Bernoulli:
    return Bernoulli(features["baseline"])


def from_network_config(net, size: int, multiscale_levels: int
                        ) -> tuple[BaselineCNN, SegmentationCVAE]:
  """(the baseline CNN, the conv CVAE around an identical one) for size x
  size images from a `network` config block (train/configs/segmentation.py's);
  ConfigError when its geometry cannot work (`check_network_geometry`)."""
  check_network_geometry(net, size, multiscale_levels)
  baseline = dict(
      encoder_channels=tuple(net.baseline_encoder_channels),
      middle_channels=net.baseline_middle_channels,
      decoder_channels=tuple(net.baseline_decoder_channels),
      kernels=tuple(net.baseline_kernels))
  shared = dict(first_stride=net.first_stride, pools=tuple(net.pools),
                height=size, width=size, multiscale_levels=multiscale_levels)
  cvae = SegmentationCVAE(
      encoder_channels=tuple(net.encoder_channels),
      encoder_kernels=tuple(net.encoder_kernels),
      latent_channels=net.latent_channels, latent_kernel=net.latent_kernel,
      decoder_channels=tuple(net.decoder_channels),
      decoder_kernels=tuple(net.decoder_kernels),
      **{f"baseline_{k}": v for k, v in baseline.items()}, **shared)
  return BaselineCNN(**baseline, **shared), cvae
