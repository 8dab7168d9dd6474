"""The CVAE interface every model of the library implements, and its one-pass
forward.

A CVAE subclasses `CVAE` and defines four methods on *condition features*,
what the nets compute from x alone (an encoder's feature map, a baseline's
prediction, the condition itself), so that a step computes them once:

* `encode(condition) -> features`              any pytree; default: x itself
* `prior_from_features(features)`              p(z | x), a `DiagonalGaussian`
                                               with fields [batch, latent]
* `recognition_from_features(target, features)`  q(z | x, y), likewise
* `generation_from_features(z, features)`      p(y | x, z), a likelihood
                                               (`distributions.Bernoulli`, ...)
                                               with batch shape z.shape[:-1]
* `baseline_from_features(features)`           optional: the likelihood of a
                                               baseline net inside the model
                                               (trained jointly), else None

`z` is [..., batch, latent]: leading sample axes broadcast against the
[batch, ...] features. `forward` runs the nets once each and returns
`CVAEOutputs`, from which `cvae_jax.objectives` computes every loss as a pure
function. `prior(condition)`, `recognition(target, condition)` and
`generation(z, condition)` are conveniences that encode x themselves (for
sampling, plotting and tests); a loop over samples should `encode` once and
call the `*_from_features` methods.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax import distributions
from cvae_jax.distributions import DiagonalGaussian

__all__ = ["CVAE", "CVAEOutputs", "forward"]


class CVAEOutputs(NamedTuple):
  """What one forward pass of a CVAE computes.

  posterior: q(z | x, y), fields [batch, latent]; None if not asked for.
  prior: p(z | x), fields [batch, latent].
  posterior_z: [batch, latent], one reparameterised z ~ q (or None).
  likelihood: p(y | x, z = posterior_z), batch shape [batch] (or None).
  prior_z: [S, batch, latent], S reparameterised z ~ p (or None).
  prior_likelihood: p(y | x, z = prior_z), batch shape [S, batch] (or None).
  baseline: the model's baseline likelihood p(y | x), [batch] (or None).
  """
  posterior: DiagonalGaussian | None
  prior: DiagonalGaussian
  posterior_z: jax.Array | None
  likelihood: Any
  prior_z: jax.Array | None
  prior_likelihood: Any
  baseline: Any


class CVAE(nn.Module):
  """Base class of the library's CVAEs; see the module docstring."""

  def encode(self, condition: Any) -> Any:
    """Condition features, computed once per batch; default: x itself."""
    return condition

  def prior_from_features(self, features: Any) -> DiagonalGaussian:
    """p(z | x) from the condition's features; fields [batch, latent]."""
    raise NotImplementedError

  def recognition_from_features(self, target: jax.Array,
                                features: Any) -> DiagonalGaussian:
    """q(z | x, y) from the target and the condition's features; fields
    [batch, latent]."""
    raise NotImplementedError

  def generation_from_features(self, z: jax.Array, features: Any) -> Any:
    """p(y | x, z): a likelihood (`log_prob`, `sample`, `mean`) with batch
    shape z.shape[:-1]; z [..., batch, latent] may carry leading sample axes."""
    raise NotImplementedError

  def baseline_from_features(self, features: Any) -> Any:
    """The likelihood of the model's own baseline net, or None (no baseline)."""
    del features
    return None

  def prior(self, condition: Any) -> DiagonalGaussian:
    """p(z | x), fields [batch, latent]."""
    return self.prior_from_features(self.encode(condition))

  def recognition(self, target: jax.Array, condition: Any) -> DiagonalGaussian:
    """q(z | x, y), fields [batch, latent]."""
    return self.recognition_from_features(target, self.encode(condition))

  def generation(self, z: jax.Array, condition: Any) -> Any:
    """p(y | x, z), a likelihood with batch shape z.shape[:-1]."""
    return self.generation_from_features(z, self.encode(condition))

  def forward(self, target: jax.Array, condition: Any, rng: jax.Array,
              posterior: bool = True, prior_samples: int = 0) -> CVAEOutputs:
    """Every net once: encode x, q(z | x, y) and one z ~ q (if `posterior`),
    p(z | x) and `prior_samples` z ~ p, and one generation pass over all z.

    The noise is that of `distributions.sample_gaussian` with `rng` for the
    posterior z and for a single prior z (common random numbers), and with
    `jax.random.split(rng, 1)[0]` for S > 1 prior z.
    """
    features = self.encode(condition)
    prior = self.prior_from_features(features)
    q = z_q = z_p = None
    if posterior:
      q = self.recognition_from_features(target, features)
      z_q = distributions.sample_gaussian(rng, q)
    if prior_samples == 1:
      z_p = distributions.sample_gaussian(rng, prior)[None]
    elif prior_samples > 1:
      z_p = distributions.sample_gaussian(jax.random.split(rng, 1)[0], prior,
                                          prior_samples)
    generate = lambda z: self.generation_from_features(z, features)
    likelihood = prior_likelihood = None
    if z_p is None:
      likelihood = generate(z_q) if posterior else None
    elif not posterior:
      prior_likelihood = generate(z_p)
    else:  # One decoder pass over the posterior's and the prior's z.
      both = generate(jnp.concatenate([z_q[None], z_p]))
      likelihood = jax.tree.map(lambda a: a[0], both)
      prior_likelihood = jax.tree.map(lambda a: a[1:], both)
    return CVAEOutputs(q, prior, z_q, likelihood, z_p, prior_likelihood,
                       self.baseline_from_features(features))

  def __call__(self, target: jax.Array, condition: Any) -> Any:
    """p(y | x, z = E[z | x, y]); touches every net (what `init` calls)."""
    features = self.encode(condition)
    self.prior_from_features(features)
    self.baseline_from_features(features)
    posterior = self.recognition_from_features(target, features)
    return self.generation_from_features(posterior.mean, features)


def forward(model: CVAE, params, batch: dict, rng: jax.Array, *,
            posterior: bool = True, prior_samples: int = 0) -> CVAEOutputs:
  """`model.forward` on batch {"target", "condition"}: one apply, each net once."""
  return model.apply(params, batch["target"], batch["condition"], rng,
                     posterior, prior_samples, method="forward")
