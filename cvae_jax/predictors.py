"""What evaluators ask of a model: its predictions, never its name.

A prediction is a likelihood p(y | x, w) in the `cvae_jax.distributions`
protocol (`log_prob`, `sample`, `mean`; `Bernoulli` logits for masks, a
Gaussian for boxes), where w is whatever the model draws to make one: a
latent z ~ p(z | x) for a CVAE, a mixture component for a mixture density
network, a draw of the logits for a sampler with no latent, nothing for a
deterministic net. A `Predictor` gives, for a batch of conditions x:

  samples(params, condition, rng, num_samples)
      S predictions, batch shape [S, batch] (x is encoded once);
  point(params, condition)
      the model's point prediction, batch shape [batch] (a CVAE's at
      z = E[z | x], Sohn et al.'s deterministic inference); `point_name`
      says which ("prior_mean", "exact" for a deterministic net, "point");
  log_likelihood(params, batch, rng, num_samples)
      [batch] log p(y | x) in nats of batch {"condition", "target", ...}:
      exact, or an estimate from `num_samples` draws; `log_likelihood_label`
      says which (what a figure made from it is called), and is None where
      the model defines none.

`predictor(model)` makes one for any flax module:
  * a module that defines `sample_predictions(condition, rng, num_samples)`
    and `point_prediction(condition)` (and optionally
    `log_likelihood(target, condition, rng, num_samples)` with a class attribute
    `log_likelihood_label`) implements the protocol itself (`ModulePredictor`:
    e.g. a Gaussian over logits with no latent);
  * a `cvae_jax.models.cvae.CVAE` gets `CVAEPredictor` (importance sampling
    from q(z | x, y); a GSNN, whose recognition net is untrained, is
    `CVAEPredictor(model, proposal="prior")`);
  * any other module is a deterministic net, `DeterministicPredictor`: its
    `__call__(condition)` returns one likelihood (or plain Bernoulli logits)
    and its log-likelihood is exact.
"""

import dataclasses
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from cvae_jax import distributions, estimators, sampling
from cvae_jax.errors import ConfigError
from cvae_jax.models.cvae import CVAE

__all__ = ["Predictor", "predictor", "as_likelihood", "CVAEPredictor",
           "DeterministicPredictor", "ModulePredictor", "PROTOCOL_METHODS"]


class Predictor(Protocol):
  """See the module docstring."""

  log_likelihood_label: str | None
  point_name: str

  def samples(self, params, condition, rng: jax.Array, num_samples: int) -> Any:
    """S predictions for the batch of conditions: a likelihood with batch
    shape [S, batch]."""
    ...

  def point(self, params, condition) -> Any:
    """The model's point prediction: a likelihood with batch shape [batch]."""
    ...

  def log_likelihood(self, params, batch: dict, rng: jax.Array,
                     num_samples: int) -> jax.Array:
    """[batch] log p(y | x) in nats of {"condition", "target", ...}: exact, or
    an estimate from `num_samples` draws (`log_likelihood_label` says which)."""
    ...


def as_likelihood(output) -> Any:
  """A net's output as a likelihood: plain arrays are Bernoulli logits."""
  if isinstance(output, jax.Array | jnp.ndarray):
    return distributions.Bernoulli(output)
  return output


def _repeat(likelihood, num_samples: int):
  """The likelihood with a leading axis of `num_samples` copies."""
  return jax.tree.map(
      lambda a: jnp.broadcast_to(a, (num_samples, *a.shape)), likelihood)


@dataclasses.dataclass(frozen=True)
class CVAEPredictor:
  """Predictions of a `CVAE` from z ~ p(z | x).

  proposal: "recognition" (log p(y | x) importance-sampled from q(z | x, y))
    or "prior" (the plain Monte-Carlo estimate, for a model whose recognition
    net is not trained, e.g. a GSNN).
  chunk_size: the log-likelihood's samples are drawn this many at a time
    (default: all at once); the draws depend on it.
  """
  model: CVAE
  proposal: str = "recognition"
  chunk_size: int | None = None
  point_name = "prior_mean"  # The point prediction is at z = E[z | x].

  def __post_init__(self):
    if self.proposal not in ("recognition", "prior"):
      raise ValueError(f"proposal must be 'recognition' or 'prior', got "
                       f"{self.proposal!r}")

  @property
  def log_likelihood_label(self) -> str:
    source = "q(z|x,y)" if self.proposal == "recognition" else "p(z|x)"
    kind = ("importance-sampled" if self.proposal == "recognition"
            else "prior Monte Carlo")
    return f"{kind} from {source}"

  def samples(self, params, condition, rng, num_samples):
    return sampling.prior_predictive(self.model, params, condition, rng,
                                     num_samples)[0]

  def point(self, params, condition):
    return sampling.prior_predictive(self.model, params, condition, None,
                                     with_mean=True)[0]

  def log_likelihood(self, params, batch, rng, num_samples):
    chunk = min(self.chunk_size or num_samples, num_samples)
    return estimators.cvae_log_likelihood(self.model, params, batch, rng,
                                          num_samples, self.proposal, chunk)


@dataclasses.dataclass(frozen=True)
class DeterministicPredictor:
  """A net x -> one likelihood: every sample is that prediction, and its
  log-likelihood is exact."""
  model: nn.Module
  log_likelihood_label: str = "exact"
  point_name = "exact"  # The point prediction is the model's likelihood.

  def point(self, params, condition):
    return as_likelihood(self.model.apply(params, condition))

  def samples(self, params, condition, rng, num_samples):
    del rng
    return _repeat(self.point(params, condition), num_samples)

  def log_likelihood(self, params, batch, rng, num_samples=1):
    del rng, num_samples
    return estimators.batch_log_likelihood(self.point(params, batch["condition"]),
                                           batch)


@dataclasses.dataclass(frozen=True)
class ModulePredictor:
  """A module that implements the protocol itself (see the module
  docstring); `log_likelihood` is None when it defines none."""
  model: nn.Module
  point_name = "point"

  @property
  def log_likelihood_label(self) -> str | None:
    if not callable(getattr(self.model, "log_likelihood", None)):
      return None
    return (getattr(self.model, "log_likelihood_label", None)
            or "the model's own estimate")

  def samples(self, params, condition, rng, num_samples):
    samples = as_likelihood(self.model.apply(params, condition, rng, num_samples,
                                             method="sample_predictions"))
    self._check("sample_predictions", samples, (num_samples, _batch_size(condition)))
    return samples

  def point(self, params, condition):
    point = as_likelihood(self.model.apply(params, condition,
                                           method="point_prediction"))
    self._check("point_prediction", point, (_batch_size(condition),))
    return point

  def log_likelihood(self, params, batch, rng, num_samples):
    if self.log_likelihood_label is None:
      raise ConfigError(
          f"{type(self.model).__name__} defines no log_likelihood(target, "
          "condition, rng, num_samples); add one (cvae_jax.predictors)")
    values = self.model.apply(params, batch["target"], batch["condition"], rng,
                              num_samples, method="log_likelihood")
    if values.shape != (_batch_size(batch["condition"]),):
      raise ConfigError(f"{type(self.model).__name__}.log_likelihood returned "
                        f"shape {values.shape}; it returns one value per example, "
                        f"[batch]")
    return values

  def _check(self, method: str, likelihood, batch_shape: tuple) -> None:
    """ConfigError unless the prediction's leading axes are `batch_shape`."""
    shape = distributions.mean_of(likelihood).shape
    if shape[:len(batch_shape)] != batch_shape:
      raise ConfigError(
          f"{type(self.model).__name__}.{method} returned predictions of shape "
          f"{shape}; their leading axes must be {batch_shape} (see "
          "cvae_jax.predictors)")


PROTOCOL_METHODS = ("sample_predictions", "point_prediction")


def _batch_size(condition) -> int:
  return jax.tree.leaves(condition)[0].shape[0]


def predictor(model: nn.Module, **options) -> Predictor:
  """The `Predictor` of any flax module (see the module docstring);
  `options` go to `CVAEPredictor` (proposal, chunk_size)."""
  defined = [m for m in PROTOCOL_METHODS if callable(getattr(model, m, None))]
  if defined:
    if len(defined) < len(PROTOCOL_METHODS):
      missing = sorted(set(PROTOCOL_METHODS) - set(defined))
      raise ConfigError(f"{type(model).__name__} defines {defined[0]} but not "
                      f"{', '.join(missing)}; a model that makes its own "
                      "predictions defines both (cvae_jax.predictors)")
    return ModulePredictor(model)
  if isinstance(model, CVAE):
    return CVAEPredictor(model, **options)
  return DeterministicPredictor(model)
