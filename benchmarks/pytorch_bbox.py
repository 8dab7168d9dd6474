"""The box CVAE in PyTorch, the same model as cvae_jax.models.bbox.BoxCVAE
built from train/configs/bbox.py (model=cvae, condition=image), for
`bbox_speed`: a Gaussian over the box with std fixed at `cvae_box_std`
(its unused log-variance layer kept, so that the parameter counts are
equal); the loss per box: -log N(y; mean, std^2) + KL(q || p), one z ~ q;
Adam. The encoder's map is flattened in flax's (H, W, C) order, so
`load_flax_params` gives the same function; `PEER` (`pytorch_common`).
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

from benchmarks import pytorch_common
from benchmarks.pytorch_segmentation import ConvEncoder
from cvae_jax.tasks import bbox
from train.configs import bbox as bbox_config

BOX_SIZE = 4


def with_coordinates(images: torch.Tensor) -> torch.Tensor:
  """[B, C, H, W] -> [B, C + 2, H, W]: each pixel's x and y in [0, 1]."""
  batch, _, height, width = images.shape
  ys, xs = torch.meshgrid(torch.linspace(0.0, 1.0, height),
                          torch.linspace(0.0, 1.0, width), indexing="ij")
  grid = torch.stack([xs, ys]).expand(batch, 2, height, width)
  return torch.cat([images, grid], 1)


class BoxCVAE(nn.Module):
  """The CVAE over boxes; forward(images NCHW, boxes [B, 4], noise [B, latent])
  -> the per-box -ELBO [B] in nats."""

  def __init__(self, network, image_size: int, in_channels: int = 1):
    super().__init__()
    self.encoder = ConvEncoder(in_channels + 2, network.channels, network.kernels,
                               network.pools, network.first_stride)
    side = -(-image_size // network.first_stride)
    for pool in network.pools:
      side //= pool
    self.features = nn.Linear(side * side * network.channels[-1], network.features)
    hidden, latent, features = network.hidden, network.latent, network.features
    self.prior_net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                   nn.Linear(hidden, 2 * latent))
    self.target_embedding = nn.Linear(BOX_SIZE, features)
    self.recognition_net = nn.Sequential(nn.Linear(2 * features, hidden), nn.ReLU(),
                                         nn.Linear(hidden, 2 * latent))
    self.generation_net = nn.Sequential(
        nn.Linear(features + latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
        nn.ReLU())
    self.box_mean = nn.Linear(hidden, BOX_SIZE)
    self.box_log_variance = nn.Linear(hidden, BOX_SIZE)  # Unused: fixed std.
    self.log_variance = 2.0 * math.log(network.cvae_box_std)

  def encode(self, images):
    h = self.encoder(with_coordinates(images))
    h = h.permute(0, 2, 3, 1).reshape(len(h), -1)  # flax's (H, W, C) order.
    return F.relu(self.features(h))

  def forward(self, images, boxes, noise):
    h = self.encode(images)
    p_mean, p_log_var = self.prior_net(h).chunk(2, -1)
    y = F.relu(self.target_embedding(boxes))
    q_mean, q_log_var = self.recognition_net(torch.cat([h, y], -1)).chunk(2, -1)
    z = q_mean + torch.exp(0.5 * q_log_var) * noise
    mean = self.box_mean(self.generation_net(torch.cat([h, z], -1)))
    nll = 0.5 * torch.sum((boxes - mean) ** 2 / math.exp(self.log_variance)
                          + self.log_variance + math.log(2 * math.pi), -1)
    return nll + pytorch_common.gaussian_kl(q_mean, q_log_var, p_mean, p_log_var, -1)


def load_flax_params(model: BoxCVAE, params) -> None:
  """Copies the flax BoxCVAE's weights (model.init's output) into `model`."""
  p = params["params"]
  encoder = p["encoder"]
  layers = [(conv, encoder["ConvEncoder_0"][f"Conv_{i}"])
            for i, conv in enumerate(model.encoder.convs)]
  layers.append((model.features, encoder["Dense_0"]))
  for net in ("prior_net", "recognition_net"):
    layers += [(getattr(model, net)[0], p[net]["layers_0"]),
               (getattr(model, net)[2], p[net]["layers_2"])]
  layers += [(model.target_embedding, p["target_embedding"]),
             (model.generation_net[0], p["generation_net"]["layers_0"]),
             (model.generation_net[2], p["generation_net"]["layers_2"]),
             (model.box_mean, p["box_head"]["mean"]),
             (model.box_log_variance, p["box_head"]["log_variance"])]
  pytorch_common.copy_flax_layers(model, layers)


def make_train_step(config, in_channels: int = 1):
  """(model, step(images NCHW, boxes [B, 4]) -> loss): one z ~ q per box."""
  model = BoxCVAE(config.network, config.image_size, in_channels)
  latent = config.network.latent

  def loss_of(images, boxes):
    return model(images, boxes, torch.randn(len(boxes), latent))
  return model, pytorch_common.adam_step(model, config.learning_rate, loss_of)


def get_config():
  """train/configs/bbox.py with model=cvae, condition=image."""
  config = bbox_config.get_config()
  config.model, config.condition = "cvae", "image"
  return config


PEER = pytorch_common.Peer("box CVAE", bbox, {"offline": get_config}, {"offline": 50},
                           make_train_step, load_flax_params)
