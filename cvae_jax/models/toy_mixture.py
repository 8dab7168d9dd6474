"""The toy CVAE of the 2-D multimodal regression (`data/toy_mixture.py`).

recognition  q(z | x, y): [x, y] -> MLP -> (mean, log_var) [latent]
prior        p(z | x):    x      -> MLP -> (mean, log_var) [latent]
generation   p(y | x, z): [z, x] -> MLP -> N(mean(z, x), diag(exp(log_var)))
with one learned log-variance per output coordinate, shared by every x and z.
Written on `cvae_jax.models.cvae.CVAE` exactly as a user's own model would be.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from cvae_jax.distributions import DiagonalGaussian
from cvae_jax.models.cvae import CVAE

__all__ = ["MLP", "ToyMixtureCVAE"]


class MLP(nn.Module):
  """Dense layers with tanh between them; the last is linear."""
  sizes: Sequence[int]

  @nn.compact
  def __call__(self, h):
    for size in self.sizes[:-1]:
      h = nn.tanh(nn.Dense(size)(h))
    return nn.Dense(self.sizes[-1])(h)


class ToyMixtureCVAE(CVAE):
  """CVAE of y [batch, 2] given x [batch, 1]."""
  hidden_sizes: Sequence[int] = (64, 64)
  latent_size: int = 2
  target_size: int = 2

  def setup(self):
    gaussian = (*self.hidden_sizes, 2 * self.latent_size)
    self.recognition_net = MLP(gaussian)
    self.prior_net = MLP(gaussian)
    self.generation_net = MLP((*self.hidden_sizes, self.target_size))
    self.output_log_variance = self.param(
        "output_log_variance", nn.initializers.zeros, (self.target_size,))

  def _gaussian(self, h) -> DiagonalGaussian:
    mean, log_variance = jnp.split(h, 2, axis=-1)
    return DiagonalGaussian(mean, log_variance)

  def recognition_from_features(self, target, x) -> DiagonalGaussian:
    return self._gaussian(self.recognition_net(jnp.concatenate([x, target], -1)))

  def prior_from_features(self, x) -> DiagonalGaussian:
    return self._gaussian(self.prior_net(x))

  def generation_from_features(self, z, x) -> DiagonalGaussian:
    """z [..., batch, latent] against x [batch, 1]: x is broadcast over the
    leading sample axes of z."""
    x = jnp.broadcast_to(x, (*z.shape[:-1], x.shape[-1]))
    mean = self.generation_net(jnp.concatenate([z, x], -1))
    return DiagonalGaussian(mean, jnp.broadcast_to(self.output_log_variance,
                                                   mean.shape))
