"""The label-conditioned MLP CVAE of the reference PyTorch example.

Encoder  [image (784) ++ one_hot(label) (10)] -> 200 -> (mean, log_var) (10, 10)
Decoder  [z (10) ++ one_hot(label) (10)] -> 200 -> 784 Bernoulli logits
ReLU hidden units; 324,804 parameters at the reference sizes.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import Bernoulli, DiagonalGaussian, standard_normal_like
from cvae_jax.models.cvae import CVAE
from cvae_jax.models.layers import dense

__all__ = ["LabelCVAE"]


class LabelCVAE(CVAE):
  """CVAE of an image (target y) given its class label (condition x).

  The prior p(z | label) is N(0, I), as in the reference. The condition
  features are the label's one-hot code, [batch, classes].
  """

  num_pixels: int = 784
  num_classes: int = 10
  hidden_size: int = 200
  latent_size: int = 10
  initialisation: str = "pytorch"

  def setup(self):
    encoder_in = self.num_pixels + self.num_classes
    decoder_in = self.latent_size + self.num_classes
    init = self.initialisation
    self.fc1 = dense(self.hidden_size, encoder_in, init)
    self.fc21 = dense(self.latent_size, self.hidden_size, init)
    self.fc22 = dense(self.latent_size, self.hidden_size, init)
    self.fc3 = dense(self.hidden_size, decoder_in, init)
    self.fc4 = dense(self.num_pixels, self.hidden_size, init)

  def encode(self, label: jax.Array) -> jax.Array:
    """[batch] int labels -> [batch, classes] one-hot codes."""
    return jax.nn.one_hot(label, self.num_classes)

  def recognition_from_features(self, target: jax.Array,
                                one_hot: jax.Array) -> DiagonalGaussian:
    """q(z | image, label). target: [batch, pixels]."""
    h = nn.relu(self.fc1(jnp.concatenate([target, one_hot], -1)))
    return DiagonalGaussian(self.fc21(h), self.fc22(h))

  def prior_from_features(self, one_hot: jax.Array) -> DiagonalGaussian:
    """p(z | label) = N(0, I): fields [batch, latent]."""
    return standard_normal_like(
        jnp.zeros((*one_hot.shape[:-1], self.latent_size), jnp.float32))

  def generation_from_features(self, z: jax.Array, one_hot: jax.Array) -> Bernoulli:
    """p(image | z, label), Bernoulli pixels.

    Args:
      z: [..., batch, latent]; leading sample axes are allowed.
      one_hot: [batch, classes].

    Returns:
      logits [..., batch, pixels].
    """
    one_hot = jnp.broadcast_to(one_hot, (*z.shape[:-1], self.num_classes))
    h = nn.relu(self.fc3(jnp.concatenate([z, one_hot], -1)))
    return Bernoulli(self.fc4(h))
