"""Sohn et al.'s conv CVAE for segmentation in PyTorch, the same model as
cvae_jax.models.segmentation built from the same config (multiscale_levels
0), for `segmentation_speed`: the baseline CNN's logits added to the
generation net's, the prior net seeing [x, sigmoid(baseline logits)]
detached, a Gaussian latent map; the loss per image: summed BCE-with-logits
+ analytic KL + the baseline's own BCE, with the config's augmentation;
Adam. NCHW; strided convs pad like flax's "SAME", so `load_flax_params`
gives the same function. Also the two sampling evaluations, each beside the
library's, and `PEER` (`pytorch_common`).
"""

import jax.numpy as jnp
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks import fake_data, pytorch_common
from cvae_jax import estimators, metrics, sampling
from cvae_jax.models import segmentation as seg_models
from cvae_jax.tasks import segmentation
from train.configs import segmentation as offline_config
from train.configs import segmentation_cub as cub_config


class SameConv2d(nn.Conv2d):
  """nn.Conv2d with flax's "SAME" padding for odd kernels: symmetric at stride
  1; at stride s > 1 the extra row/column goes after (low = total // 2)."""

  def __init__(self, in_channels, out_channels, kernel, stride=1):
    super().__init__(in_channels, out_channels, kernel, stride,
                     kernel // 2 if stride == 1 else 0)

  def forward(self, x):
    s, k = self.stride[0], self.kernel_size[0]
    if s > 1:
      pads = []
      for size in (x.shape[3], x.shape[2]):  # F.pad order: W, then H.
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
      x = F.pad(x, pads)
    return super().forward(x)


class ConvEncoder(nn.Module):
  """Convs with ReLU, each followed by max pooling (as flax's ConvEncoder)."""

  def __init__(self, in_channels, channels, kernels, pools, first_stride=1):
    super().__init__()
    ins = [in_channels, *channels[:-1]]
    self.convs = nn.ModuleList(
        SameConv2d(i, c, k, first_stride if n == 0 else 1)
        for n, (i, c, k) in enumerate(zip(ins, channels, kernels)))
    self.pools = tuple(pools)

  def forward(self, x):
    for conv, pool in zip(self.convs, self.pools):
      x = F.relu(conv(x))
      if pool > 1:
        x = F.max_pool2d(x, pool)
    return x


class ConvDecoder(nn.Module):
  """Upsample x2 (nearest) before each conv while below `height`; a final
  conv to 1 logit channel (as flax's ConvDecoder, multiscale_levels 0)."""

  def __init__(self, in_channels, channels, kernels, height):
    super().__init__()
    ins = [in_channels, *channels]
    self.convs = nn.ModuleList(SameConv2d(i, c, k) for i, c, k in zip(ins, channels, kernels))
    self.output = SameConv2d(channels[-1], 1, kernels[len(channels)])
    self.height = height

  def _upsample(self, x):
    if x.shape[2] < self.height:
      x = F.interpolate(x, scale_factor=2, mode="nearest")
    return x

  def forward(self, x):
    for conv in self.convs:
      x = F.relu(conv(self._upsample(x)))
    return self.output(self._upsample(x))


class BaselineCNN(nn.Module):
  """x [B, C, H, W] -> mask logits [B, 1, H, W]."""

  def __init__(self, in_channels, net, height):
    super().__init__()
    n = len(net.baseline_encoder_channels)
    kernels = tuple(net.baseline_kernels)
    self.encoder = ConvEncoder(
        in_channels, (*net.baseline_encoder_channels, net.baseline_middle_channels),
        kernels[:n + 1], net.pools, net.first_stride)
    self.decoder = ConvDecoder(net.baseline_middle_channels,
                               tuple(net.baseline_decoder_channels),
                               kernels[n + 1:], height)

  def forward(self, x):
    return self.decoder(self.encoder(x))


class SegmentationCVAE(nn.Module):
  """The conv CVAE with its baseline; `forward` returns the per-image loss."""

  def __init__(self, in_channels, net, height):
    super().__init__()
    n = len(net.encoder_channels)
    self.baseline = BaselineCNN(in_channels, net, height)
    encoder = lambda: ConvEncoder(in_channels + 1, tuple(net.encoder_channels),
                                  tuple(net.encoder_kernels), tuple(net.pools[:n]),
                                  net.first_stride)
    self.recognition_encoder, self.prior_encoder = encoder(), encoder()
    head = lambda: SameConv2d(net.encoder_channels[-1], 2 * net.latent_channels,
                         net.latent_kernel)
    self.recognition_head, self.prior_head = head(), head()
    self.decoder = ConvDecoder(net.latent_channels + net.encoder_channels[-1],
                               tuple(net.decoder_channels),
                               tuple(net.decoder_kernels), height)
    self.latent_pool = net.pools[n]

  def recognition(self, x, y):
    """q(z | x, y): (mean, log variance), each [B, c, h, w]."""
    return self.recognition_head(
        self._encode(self.recognition_encoder, torch.cat([x, y], 1))).chunk(2, 1)

  def _encode(self, encoder, inputs):
    features = encoder(inputs)
    if self.latent_pool > 1:
      features = F.max_pool2d(features, self.latent_pool)
    return features

  def encode(self, x):
    """(baseline logits [B, 1, H, W], prior features): what the prior and
    the generation net share, computed once per image."""
    baseline_logits = self.baseline(x)
    guess = torch.sigmoid(baseline_logits.detach())
    return baseline_logits, self._encode(self.prior_encoder, torch.cat([x, guess], 1))

  def generate(self, z, baseline_logits, prior_features):
    """Mask logits [S * B, 1, H, W] for z [S * B, c, h, w] (S draws per image,
    sample-major) and one image's encoding per B."""
    repeats = z.shape[0] // baseline_logits.shape[0]
    return baseline_logits.repeat(repeats, 1, 1, 1) + self.decoder(
        torch.cat([z, prior_features.repeat(repeats, 1, 1, 1)], 1))

  def forward(self, x, y, noise=None):
    """x [B, C, H, W] images, y [B, 1, H, W] masks -> [B] nats: -ELBO with
    one z ~ q(z | x, y) (z = mean + std * noise; noise [B, h * w * c] in
    flax's (H, W, C) order, drawn when None) plus the baseline's -log p(y | x)."""
    baseline_logits, prior_features = self.encode(x)
    prior = self.prior_head(prior_features).chunk(2, 1)
    q_mean, q_log_var = self.recognition(x, y)
    if noise is None:
      noise = torch.randn_like(q_mean)
    else:
      noise = noise.reshape(len(q_mean), *q_mean.shape[2:], -1).permute(0, 3, 1, 2)
    z = q_mean + torch.exp(0.5 * q_log_var) * noise
    logits = self.generate(z, baseline_logits, prior_features)
    bce = lambda l: F.binary_cross_entropy_with_logits(
        l, y, reduction="none").sum((1, 2, 3))
    return (bce(logits) + pytorch_common.gaussian_kl(q_mean, q_log_var, *prior, (1, 2, 3))
            + bce(baseline_logits))


def best_of_samples_iou(model: SegmentationCVAE, images, masks, noise):
  """[B] best IoU over S masks from z ~ p(z | x) (z = mean + std * noise,
  noise [S, B, c, h, w]) against masks [B, 1, H, W]; as the JAX task's
  best-of-S evaluation (predicted mask: logit > 0; IoU 1 when both empty)."""
  num_samples, batch = noise.shape[:2]
  baseline_logits, features = model.encode(images)
  mean, log_var = model.prior_head(features).chunk(2, 1)
  z = (mean + torch.exp(0.5 * log_var) * noise).flatten(0, 1)
  samples = (model.generate(z, baseline_logits, features) > 0).reshape(
      num_samples, batch, -1)
  truth = (masks > 0.5).reshape(1, batch, -1)
  intersection = (samples & truth).sum(-1)
  union = (samples | truth).sum(-1)
  iou = torch.where(union == 0, 1.0, intersection / union.clamp(min=1))
  return iou.max(0).values


def importance_sampled_nll(model: SegmentationCVAE, images, masks, noise):
  """[B] nats: -log (1/S) sum_s p(y | x, z_s) p(z_s | x) / q(z_s | x, y),
  z_s ~ q(z | x, y) (noise [S, B, c, h, w]), y = masks [B, 1, H, W]; as
  `cvae_jax.estimators.cvae_log_likelihood`."""
  num_samples, batch = noise.shape[:2]
  baseline_logits, features = model.encode(images)
  prior = model.prior_head(features).chunk(2, 1)
  posterior = model.recognition(images, masks)
  z = posterior[0] + torch.exp(0.5 * posterior[1]) * noise  # [S, B, c, h, w]
  logits = model.generate(z.flatten(0, 1), baseline_logits, features)
  log_likelihood = -F.binary_cross_entropy_with_logits(
      logits, masks.repeat(num_samples, 1, 1, 1), reduction="none").sum((1, 2, 3))
  return pytorch_common.importance_sampled_nll(
      log_likelihood.reshape(num_samples, batch), z, prior, posterior)


def load_flax_params(model: SegmentationCVAE, params) -> None:
  """Copies a flax SegmentationCVAE's params into `model` (`copy_flax_layers`)."""
  tree = params["params"]
  pairs = [(model.baseline.encoder, tree["baseline"]["encoder"]),
           (model.baseline.decoder, tree["baseline"]["decoder"]),
           (model.recognition_encoder, tree["recognition_encoder"]),
           (model.prior_encoder, tree["prior_encoder"]),
           (model.decoder, tree["decoder"])]
  convs = [(model.recognition_head, tree["recognition_head"]),
           (model.prior_head, tree["prior_head"])]
  for module, subtree in pairs:
    convs += [(conv, subtree[f"Conv_{i}"]) for i, conv in enumerate(module.convs)]
    if isinstance(module, ConvDecoder):
      convs.append((module.output, subtree["output"]))
  pytorch_common.copy_flax_layers(model, convs)


def augment(images, masks, omission_rate: float, flip: bool):
  """Input omission noise and horizontal flips of images [B, C, H, W] and
  masks [B, 1, H, W], as the JAX task's."""
  if omission_rate:
    keep = torch.rand_like(masks) >= omission_rate
    images = images * keep
  if flip:
    flips = (torch.rand(images.shape[0]) < 0.5)[:, None, None, None]
    images = torch.where(flips, images.flip(3), images)
    masks = torch.where(flips, masks.flip(3), masks)
  return images, masks


def make_train_step(config, in_channels: int, seed: int = 0):
  """(model, step): step(images NCHW, masks [B, 1, H, W]) does forward,
  backward and an Adam update of the mean loss per image; returns the loss."""
  if config.multiscale_levels:
    raise ValueError("only multiscale_levels=0 is written in PyTorch")
  torch.manual_seed(seed)
  model = SegmentationCVAE(in_channels, config.network, config.image_size)

  def loss_of(images, masks):
    return model(*augment(images, masks, config.input_omission_rate,
                          config.horizontal_flip))
  return model, pytorch_common.adam_step(model, config.learning_rate, loss_of)


def jax_best_of_iou(config, model, params, arrays, rng, num_samples: int):
  """[B] the library's best-of-S IoU: z ~ p(z | x) -> masks (as
  `sampling.prior_predictive` and `metrics`, as its evaluator)."""
  batch = fake_data.init_batch(segmentation, config, arrays)
  logits = sampling.prior_predictive(model, params, batch["condition"], rng,
                                     num_samples)[0].logits
  size = config.image_size
  samples = seg_models.full_resolution(logits, size, size) > 0
  truth = jnp.asarray(arrays["masks"][:, 0] > 0.5)
  return jnp.max(metrics.intersection_over_union(samples, truth[None]), axis=0)


def jax_importance_sampled_nll(config, model, params, arrays, rng, num_samples: int):
  """[B] nats: the library's -log p(y | x), z ~ q(z | x, y) (Sohn et al.'s (c))."""
  batch = fake_data.init_batch(segmentation, config, arrays)
  return -estimators.cvae_log_likelihood(
      model, params, batch, rng, num_samples,
      rows_per_slice=num_samples * len(arrays["image"]))


def latent_shape(config) -> tuple[int, int, int]:
  side = config.image_size // seg_models.downsampling_factor(
      config.network.first_stride, config.network.pools)
  return config.network.latent_channels, side, side


PEER = pytorch_common.Peer(
    "segmentation CVAE", segmentation,
    {"offline": offline_config.get_config, "cub": cub_config.get_config},
    {"offline": 10, "cub": 1}, make_train_step, load_flax_params,
    {"best_of_iou": (jax_best_of_iou, best_of_samples_iou),
     "importance_sampled_nll": (jax_importance_sampled_nll, importance_sampled_nll)},
    latent_shape, large_eval_images=2)
