"""Kohl et al.'s Probabilistic U-Net in PyTorch, the same model as
cvae_jax.models.prob_unet.ProbabilisticUNet built from the same config, for
`prob_unet_speed` (upsampling with half-pixel centres, as jax.image.resize);
the loss per image: summed BCE-with-logits at one z ~ q(z | x, y) + beta *
KL(q || p), a random grader's mask per image; Adam. `load_flax_params` gives
the same function. Also the two sampling evaluations, each beside the
library's, and `PEER` (`pytorch_common`).
"""


import jax.numpy as jnp
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks import pytorch_common
from cvae_jax import configs, metrics, predictors
from cvae_jax.evaluators import ambiguity
from cvae_jax.tasks import prob_unet
from train.configs import prob_unet as offline_config
from train.configs import prob_unet_lidc as lidc_config


def _conv3(in_channels: int, out_channels: int) -> nn.Conv2d:
  return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class DownPath(nn.Module):
  """[N, C, H, W] -> the feature map of every block, finest first (as flax's
  DownPath: avg-pool 2 before every block but the first)."""

  def __init__(self, in_channels, channels, convs_per_block):
    super().__init__()
    self.blocks = nn.ModuleList()
    for c in channels:
      self.blocks.append(nn.ModuleList(
          _conv3(in_channels if j == 0 else c, c) for j in range(convs_per_block)))
      in_channels = c

  def forward(self, x):
    features = []
    for i, block in enumerate(self.blocks):
      if i:
        x = F.avg_pool2d(x, 2)
      for conv in block:
        x = F.relu(conv(x))
      features.append(x)
    return features


class UNet(nn.Module):
  """[N, C, H, W] -> the last feature map [N, channels[0], H, W]."""

  def __init__(self, in_channels, channels, convs_per_block):
    super().__init__()
    self.down = DownPath(in_channels, channels, convs_per_block)
    # up[k] is the block at scale i = len(channels) - 2 - k (coarse to fine).
    self.up = nn.ModuleList()
    below = channels[-1]
    for i in reversed(range(len(channels) - 1)):
      self.up.append(nn.ModuleList(
          _conv3(below + channels[i] if j == 0 else channels[i], channels[i])
          for j in range(convs_per_block)))
      below = channels[i]

  def forward(self, x):
    skips = self.down(x)
    x = skips[-1]
    for block, skip in zip(self.up, reversed(skips[:-1])):
      x = F.interpolate(x, size=skip.shape[2:], mode="bilinear",
                        align_corners=False)
      x = torch.cat([x, skip], 1)
      for conv in block:
        x = F.relu(conv(x))
    return x


class GaussianEncoder(nn.Module):
  """Down path, global mean pooling, Linear -> (mean, log-variance) [N, latent]."""

  def __init__(self, in_channels, channels, latent_size, convs_per_block,
               log_variance_bound):
    super().__init__()
    self.down = DownPath(in_channels, channels, convs_per_block)
    self.head = nn.Linear(channels[-1], 2 * latent_size)
    self.bound = log_variance_bound

  def forward(self, x):
    pooled = self.down(x)[-1].mean((2, 3))
    mean, log_variance = self.head(pooled).chunk(2, 1)
    return mean, self.bound * torch.tanh(log_variance / self.bound)


class ProbabilisticUNet(nn.Module):
  """`forward` returns the per-image training loss."""

  def __init__(self, net, in_channels: int = 1, beta: float = 1.0):
    super().__init__()
    channels = tuple(net.channels)
    self.unet = UNet(in_channels, channels, net.convs_per_block)
    encoder = lambda c: GaussianEncoder(c, channels, net.latent_size,
                                        net.convs_per_block, net.log_variance_bound)
    self.prior_net = encoder(in_channels)
    self.posterior_net = encoder(in_channels + 1)
    ins = [channels[0] + net.latent_size] + [channels[0]] * net.fcomb_convs
    self.fcomb = nn.ModuleList(nn.Conv2d(i, channels[0], 1) for i in ins[:-1])
    self.fcomb_output = nn.Conv2d(ins[-1], 1, 1)
    self.beta = beta

  def combine(self, z, features):
    """z [N, latent] broadcast over features [N, c, H, W] -> logits [N, 1, H, W]."""
    z_map = z[:, :, None, None].expand(-1, -1, *features.shape[2:])
    x = torch.cat([features, z_map], 1)
    for conv in self.fcomb:
      x = F.relu(conv(x))
    return self.fcomb_output(x)

  def forward(self, x, y, noise=None):
    """x [N, C, H, W] images, y [N, 1, H, W] masks -> [N] nats:
    -log p(y | x, z) at z = mean + std * noise ~ q(z | x, y) (noise drawn
    when None) + beta * KL(q || p)."""
    q_mean, q_log_var = self.posterior_net(torch.cat([x, y], 1))
    p_mean, p_log_var = self.prior_net(x)
    noise = torch.randn_like(q_mean) if noise is None else noise
    z = q_mean + torch.exp(0.5 * q_log_var) * noise
    logits = self.combine(z, self.unet(x))
    reconstruction = F.binary_cross_entropy_with_logits(
        logits, y, reduction="none").sum((1, 2, 3))
    return reconstruction + self.beta * pytorch_common.gaussian_kl(
        q_mean, q_log_var, p_mean, p_log_var, 1)


def _down_convs(down: DownPath, tree) -> list:
  convs = [conv for block in down.blocks for conv in block]
  return [(conv, tree[f"Conv_{k}"]) for k, conv in enumerate(convs)]


def importance_sampled_nll(model: ProbabilisticUNet, images, masks, noise):
  """[B] nats: -log p(y_g | x) importance-sampled from q(z | x, y_g), z = mean
  + std * noise (noise [S, B, latent], the same for every grader), mean over
  the G graders of masks [B, G, H, W]; as
  `cvae_jax.evaluators.ambiguity.negative_log_likelihood`."""
  num_samples, batch = noise.shape[:2]
  features = model.unet(images).repeat(num_samples, 1, 1, 1)
  prior = model.prior_net(images)
  per_grader = []
  for g in range(masks.shape[1]):
    y = masks[:, g:g + 1]
    posterior = model.posterior_net(torch.cat([images, y], 1))
    z = posterior[0] + torch.exp(0.5 * posterior[1]) * noise
    logits = model.combine(z.flatten(0, 1), features)
    log_likelihood = -F.binary_cross_entropy_with_logits(
        logits, y.repeat(num_samples, 1, 1, 1), reduction="none").sum((1, 2, 3))
    per_grader.append(pytorch_common.importance_sampled_nll(
        log_likelihood.reshape(num_samples, batch), z, prior, posterior))
  return torch.stack(per_grader).mean(0)


def load_flax_params(model: ProbabilisticUNet, params) -> None:
  """Copies a flax ProbabilisticUNet's params into `model` (`copy_flax_layers`)."""
  tree = params["params"]
  n = len(model.unet.down.blocks)
  layers = _down_convs(model.unet.down, tree["unet"]["down"])
  for k, block in enumerate(model.unet.up):
    i = n - 2 - k
    layers += [(conv, tree["unet"][f"up_{i}_{j}"]) for j, conv in enumerate(block)]
  for net in ("prior_net", "posterior_net"):
    encoder = getattr(model, net)
    layers += _down_convs(encoder.down, tree[net]["down"])
    layers.append((encoder.head, tree[net]["head"]))
  layers += [(conv, tree[f"fcomb_{i}"]) for i, conv in enumerate(model.fcomb)]
  layers.append((model.fcomb_output, tree["fcomb_output"]))
  pytorch_common.copy_flax_layers(model, layers)


def pick_grader(masks):
  """[B, G, H, W] -> [B, 1, H, W]: a random grader's mask per image."""
  choice = torch.randint(masks.shape[1], (masks.shape[0],))
  return masks[torch.arange(masks.shape[0]), choice][:, None]


def make_train_step(config, in_channels: int = 1, seed: int = 0):
  """(model, step): step(images NCHW, masks [B, G, H, W]) does forward,
  backward and an Adam update of the mean loss per image; returns the loss."""
  if config.model != "prob_unet":
    raise ValueError("only model=prob_unet is written in PyTorch")
  torch.manual_seed(seed)
  model = ProbabilisticUNet(config.network, in_channels, config.beta)
  return model, pytorch_common.adam_step(
      model, config.learning_rate,
      lambda images, masks: model(images, pick_grader(masks)))


def torch_ged(torch_model, images, masks, noise):
  """[B] GED of S samples z ~ p(z | x) (noise [S, B, latent]) against the
  graders' masks [B, G, H, W], d = 1 - IoU as `metrics.pairwise_distances`
  (masks as float matmuls)."""
  num_samples, batch = noise.shape[:2]
  features = torch_model.unet(images)
  p_mean, p_log_var = torch_model.prior_net(images)
  z = (p_mean + torch.exp(0.5 * p_log_var) * noise).reshape(num_samples * batch, -1)
  logits = torch_model.combine(z, features.repeat(num_samples, 1, 1, 1))
  samples = (logits > 0).float().reshape(num_samples, batch, -1).transpose(0, 1)
  graders = masks.reshape(batch, masks.shape[1], -1)

  def distances(a, b):
    intersection = a @ b.transpose(1, 2)
    union = a.sum(-1)[:, :, None] + b.sum(-1)[:, None, :] - intersection
    return torch.where(union == 0, 0.0, 1.0 - intersection / union.clamp(min=1.0))
  return (2 * distances(samples, graders).mean((1, 2))
          - distances(samples, samples).mean((1, 2))
          - distances(graders, graders).mean((1, 2)))


def jax_ged(config, model, params, arrays, rng, num_samples: int):
  """[B] the library's GED of S samples z ~ p(z | x) against the graders (its
  `predictors` samples, `metrics.generalized_energy_distance`)."""
  images, masks = jnp.asarray(arrays["image"]), jnp.asarray(arrays["masks"])
  samples = predictors.predictor(model).samples(params, images, rng, num_samples)
  drawn = jnp.moveaxis(ambiguity.masks_of(samples, config.image_size), 0, 1)
  return metrics.generalized_energy_distance(drawn, masks > 0.5).ged


def jax_importance_sampled_nll(config, model, params, arrays, rng, num_samples: int):
  """[B] nats: the library's -log p(y_g | x) from q(z | x, y_g), mean over
  the graders (`ambiguity.negative_log_likelihood`, one chunk)."""
  del config
  return ambiguity.negative_log_likelihood(
      predictors.predictor(model, chunk_size=num_samples), params,
      jnp.asarray(arrays["image"]), jnp.asarray(arrays["masks"]), rng, num_samples)


PEER = pytorch_common.Peer(
    "Probabilistic U-Net", prob_unet,
    {name: lambda module=module: configs.with_overrides(module.get_config(),
                                                        {"model": "prob_unet"})
     for name, module in (("offline", offline_config), ("lidc", lidc_config))},
    {"offline": 10, "lidc": 2}, make_train_step, load_flax_params,
    {"ged": (jax_ged, torch_ged),
     "importance_sampled_nll": (jax_importance_sampled_nll, importance_sampled_nll)},
    lambda config: (config.network.latent_size,),
    # S x batch maps of the fcomb's width: ~20 GB at 128x128 with 20 images.
    large_eval_images=4)
