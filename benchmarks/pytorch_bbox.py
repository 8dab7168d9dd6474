"""The box CVAE in PyTorch, the same model as cvae_jax.models.bbox.BoxCVAE,
for speed comparisons on one machine.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.pytorch_bbox [--threads=2]

Built from train/configs/bbox.py (model=cvae, condition=image): the same
layers (the image plus two coordinate channels, convs with ReLU and max
pooling, the first strided with flax's "SAME" padding, a dense ReLU layer
shared by the three nets; prior and recognition MLPs to a diagonal Gaussian
over z, the target embedded by its own dense layer; a 2-layer generation MLP
and a Gaussian head over the box whose std is fixed at `cvae_box_std`, its
unused log-variance layer kept so that the parameter counts are equal) and
the same training loss per box: -log N(y; mean, box_std^2) summed over the 4
coordinates + the analytic KL(q || p), one z ~ q; Adam. The encoder's map is
flattened in flax's (H, W, C) order so that `load_flax_params` gives the same
function (`check_same_model`). `bbox_speed` times it beside the JAX step.
"""

import functools
import math

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks import pytorch_common
from benchmarks.pytorch_segmentation import ConvEncoder
from cvae_jax import distributions
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


def _gaussian(out: torch.Tensor):
  return out.chunk(2, dim=-1)  # (mean, log variance)


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
    p_mean, p_log_var = _gaussian(self.prior_net(h))
    y = F.relu(self.target_embedding(boxes))
    q_mean, q_log_var = _gaussian(self.recognition_net(torch.cat([h, y], -1)))
    z = q_mean + torch.exp(0.5 * q_log_var) * noise
    mean = self.box_mean(self.generation_net(torch.cat([h, z], -1)))
    nll = 0.5 * torch.sum((boxes - mean) ** 2 / math.exp(self.log_variance)
                          + self.log_variance + math.log(2 * math.pi), -1)
    kl = 0.5 * torch.sum(p_log_var - q_log_var - 1.0 + (
        torch.exp(q_log_var) + (q_mean - p_mean) ** 2) / torch.exp(p_log_var), -1)
    return nll + kl


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


def random_arrays(config, seed: int = 0) -> dict[str, np.ndarray]:
  """{"image" [B, H, W, 1] uniform in [0, 1], "boxes" [B, 4] in (0, 1)}."""
  rng = np.random.default_rng(seed)
  b, s = config.batch_size, config.image_size
  return {"image": rng.random((b, s, s, 1), np.float32),
          "boxes": rng.uniform(0.1, 0.9, (b, BOX_SIZE)).astype(np.float32)}


def get_config():
  """train/configs/bbox.py with model=cvae, condition=image."""
  config = bbox_config.get_config()
  config.model, config.condition = "cvae", "image"
  return config


def task_arrays(arrays: dict) -> dict:
  """The box task's arrays with one (valid) box per canvas."""
  batch = len(arrays["boxes"])
  return {"image": arrays["image"], "boxes": arrays["boxes"][:, None],
          "labels": np.zeros((batch, 1), np.int32),
          "query": np.zeros(batch, np.int32)}


def init_params(config, model):
  """The flax BoxCVAE's initial weights for config's image size."""
  condition = {"image": jnp.zeros((1, config.image_size, config.image_size, 1)),
               "class": jnp.zeros((1,), jnp.int32)}
  return model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)), condition)


def check_same_model(config, params, torch_model, arrays) -> float:
  """The largest relative difference between the flax model's per-box -ELBO
  and the PyTorch model's, given the flax weights and the same z noise.
  Loads `params` into `torch_model`."""
  model = bbox.make_model(config)
  load_flax_params(torch_model, params)
  condition = {"image": jnp.asarray(arrays["image"]),
               "class": jnp.zeros(len(arrays["boxes"]), jnp.int32)}

  def per_box(module, condition, target, noise):
    posterior = module.recognition(target, condition)
    z = posterior.mean + jnp.exp(0.5 * posterior.log_variance) * noise
    nll = -module.generation(z, condition).log_prob(target)
    return nll + distributions.kl_diagonal_gaussians(posterior, module.prior(condition))

  noise = np.random.default_rng(1).standard_normal(
      (len(arrays["boxes"]), config.network.latent), np.float32)
  jax_loss = np.asarray(jax.jit(functools.partial(model.apply, method=per_box))(
      params, condition, jnp.asarray(arrays["boxes"]), jnp.asarray(noise)))
  with torch.no_grad():
    torch_loss = torch_model(torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2),
                             torch.from_numpy(arrays["boxes"]),
                             torch.from_numpy(noise)).numpy()
  return float(np.max(np.abs(jax_loss - torch_loss) / np.abs(jax_loss)))


def main(argv):
  del argv
  args = flags.FLAGS
  torch.set_num_threads(args.threads)
  config = get_config()
  model, step = make_train_step(config)
  arrays = random_arrays(config)
  batch = (torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).contiguous(),
           torch.from_numpy(arrays["boxes"]))
  pytorch_common.report("Box CVAE (offline)", config, model, step, batch,
                        args.steps, args.repeats, warmup=1)


if __name__ == "__main__":
  pytorch_common.define_flags({"offline": "bbox"}, steps=50)
  app.run(main)
