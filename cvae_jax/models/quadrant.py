"""MLPs for completing an MNIST digit from some of its quadrants (Sohn et al.
2015, section 5.1; sizes of the Pyro CVAE example by default).

The condition x is the image with its hidden pixels set to `HIDDEN` (-1); the
target y holds the hidden pixels' values (its visible pixels are ignored).
Pixels are flattened: x, y are [batch, 784].

* `BaselineNet`: x -> Bernoulli logits of y (784-500-500-784), deterministic.
* `QuadrantCVAE`: recognition q(z | x, y), conditional prior p(z | x),
  generation p(y | x, z), and a `baseline` submodule whose prediction fills
  the hidden pixels of the prior's (and, if configured, the generation net's)
  input: the paper's "recurrent" initial guess. The guess is passed through
  `stop_gradient`: the baseline learns only from its own loss, or not at all
  when it is pre-trained and frozen.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax.distributions import Bernoulli, DiagonalGaussian
from cvae_jax.errors import ConfigError, require_choice, require_positive_ints
from cvae_jax.models.cvae import CVAE
from cvae_jax.models.layers import INITIALISATIONS, dense

__all__ = ["HIDDEN", "hidden_pixels", "check_network", "fill_hidden", "MLP", "BaselineNet",
           "GaussianNet", "QuadrantCVAE"]

HIDDEN = -1.0  # Value of the hidden pixels in the condition x.


def hidden_pixels(condition: jax.Array) -> jax.Array:
  """Boolean [batch, pixels]: where x is hidden (y is to be predicted)."""
  return condition == HIDDEN


def check_network(net) -> None:
  """ConfigError naming the field of a `network` config block (see
  train/configs/mnist_quadrant.py) that cannot work."""
  require_positive_ints(net, ("latent_size",), "network.")
  require_choice(net, "initialisation", INITIALISATIONS, "network.")
  if net.baseline_to_generation and not net.generation_sees_condition:
    raise ConfigError("network.baseline_to_generation needs "
                      "network.generation_sees_condition=True (p(y|z) does not "
                      "see x); set one of them")
  if not net.hidden_sizes or any(
      not isinstance(h, int) or h <= 0 for h in net.hidden_sizes):
    raise ConfigError("network.hidden_sizes must be positive integers, got "
                      f"{net.hidden_sizes!r}")


def fill_hidden(condition: jax.Array, values: jax.Array) -> jax.Array:
  """x with its hidden pixels replaced by `values` (same shape)."""
  return jnp.where(hidden_pixels(condition), values, condition)


class MLP(nn.Module):
  """ReLU hidden layers, then a linear output of `out_features`."""

  hidden_sizes: Sequence[int]
  out_features: int
  in_features: int
  initialisation: str = "pytorch"

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    h, fan_in = inputs, self.in_features
    for size in self.hidden_sizes:
      h = nn.relu(dense(size, fan_in, self.initialisation)(h))
      fan_in = size
    return dense(self.out_features, fan_in, self.initialisation)(h)


class BaselineNet(nn.Module):
  """The deterministic baseline: x -> Bernoulli over every pixel, logits
  [batch, pixels]."""

  hidden_sizes: Sequence[int] = (500, 500)
  num_pixels: int = 784
  initialisation: str = "pytorch"

  @nn.compact
  def __call__(self, condition: jax.Array) -> Bernoulli:
    return Bernoulli(MLP(self.hidden_sizes, self.num_pixels, self.num_pixels,
                         self.initialisation, name="mlp")(condition))


class GaussianNet(nn.Module):
  """inputs -> DiagonalGaussian(mean, log_variance), fields [batch, latent]."""

  hidden_sizes: Sequence[int]
  latent_size: int
  in_features: int
  initialisation: str = "pytorch"

  @nn.compact
  def __call__(self, inputs: jax.Array) -> DiagonalGaussian:
    out = MLP(self.hidden_sizes, 2 * self.latent_size, self.in_features,
              self.initialisation, name="mlp")(inputs)
    mean, log_variance = jnp.split(out, 2, axis=-1)
    return DiagonalGaussian(mean, log_variance)


class QuadrantCVAE(CVAE):
  """CVAE of the hidden pixels y given the visible ones x.

  Attributes:
    hidden_sizes: of every net (recognition, prior, generation, baseline).
    latent_size: dimension of z.
    baseline_to_prior: fill x's hidden pixels with the baseline's prediction
      before the prior net (the "recurrent" initial guess); else they stay -1.
    baseline_to_generation: likewise for the x the generation net sees.
    generation_sees_condition: p(y | x, z) as in Sohn et al.; False gives the
      Pyro example's p(y | z).
  """

  hidden_sizes: Sequence[int] = (500, 500)
  latent_size: int = 200
  baseline_to_prior: bool = True
  baseline_to_generation: bool = False
  generation_sees_condition: bool = False
  num_pixels: int = 784
  initialisation: str = "pytorch"

  def setup(self):
    sizes, pixels, init = tuple(self.hidden_sizes), self.num_pixels, self.initialisation
    self.baseline = BaselineNet(sizes, pixels, init)
    self.recognition_net = GaussianNet(sizes, self.latent_size, pixels, init)
    self.prior_net = GaussianNet(sizes, self.latent_size, pixels, init)
    # The first layer on [z, x] is split in two, so that x's half is computed
    # once per example, not once per sample of z.
    self.generation_z = dense(sizes[0], self.latent_size, init)
    if self.generation_sees_condition:
      self.generation_x = dense(sizes[0], pixels, init)
    self.generation_rest = MLP(sizes[1:], pixels, sizes[0], init)

  def encode(self, condition: jax.Array) -> dict:
    """{"condition": x, "baseline": the baseline's logits, "generation_x":
    the generation net's first layer on x (computed once for every z)}."""
    baseline = self.baseline(condition).logits
    features = {"condition": condition, "baseline": baseline}
    if self.generation_sees_condition:
      x = condition
      if self.baseline_to_generation:
        x = self._initial_guess(condition, baseline)
      features["generation_x"] = self.generation_x(x)
    return features

  @staticmethod
  def _initial_guess(condition: jax.Array, baseline_logits: jax.Array) -> jax.Array:
    """x with hidden pixels = the baseline's predicted means (no gradient)."""
    guess = jax.nn.sigmoid(jax.lax.stop_gradient(baseline_logits))
    return fill_hidden(condition, guess)

  def recognition_from_features(self, target: jax.Array,
                                features: dict) -> DiagonalGaussian:
    """q(z | x, y): the net sees x with its hidden pixels filled by y."""
    return self.recognition_net(fill_hidden(features["condition"], target))

  def prior_from_features(self, features: dict) -> DiagonalGaussian:
    """p(z | x), fields [batch, latent]."""
    condition = features["condition"]
    if self.baseline_to_prior:
      condition = self._initial_guess(condition, features["baseline"])
    return self.prior_net(condition)

  def generation_from_features(self, z: jax.Array, features: dict) -> Bernoulli:
    """Bernoulli pixels of p(y | x, z).

    Args:
      z: [..., batch, latent]; leading sample axes are allowed.

    Returns:
      logits [..., batch, pixels].
    """
    h = self.generation_z(z)
    if self.generation_sees_condition:
      h = h + features["generation_x"]
    return Bernoulli(self.generation_rest(nn.relu(h)))

  def baseline_from_features(self, features: dict) -> Bernoulli:
    return Bernoulli(features["baseline"])
