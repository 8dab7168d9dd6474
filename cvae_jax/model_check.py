"""`check_model(model, batch)`: whether a model keeps the library's CVAE
interface (`cvae_jax.models.cvae`), with one line naming what is wrong.

It traces (`jax.eval_shape`: no computation) init, encode, the prior and
recognition nets and the generation net at z [batch, latent] and at
z [S, batch, latent] (the sampling estimators' layout), and the likelihood's
`log_prob`, `sample` and `mean`; the runner calls it before training a
CVAE.
"""

import jax
import jax.numpy as jnp

from cvae_jax import distributions, estimators
from cvae_jax.errors import UserError, first_line

__all__ = ["METHODS", "ModelError", "check_model"]

METHODS = ("encode", "prior_from_features", "recognition_from_features",
           "generation_from_features")


class ModelError(UserError):
  """A model that does not keep the CVAE interface."""


def _raising_method(error: Exception) -> str | None:
  """The interface method whose frame raised `error`, innermost first."""
  frames, tb = [], error.__traceback__
  while tb is not None:
    frames.append(tb.tb_frame.f_code.co_name)
    tb = tb.tb_next
  return next((f for f in reversed(frames) if f in METHODS), None)


def _shape(tree) -> str:
  return str([tuple(x.shape) for x in jax.tree.leaves(tree)])


def check_model(model, batch: dict, num_samples: int = 3) -> None:
  """Raises ModelError naming the first thing wrong with `model` on `batch`
  ({"condition", "target", ...}, a [batch, ...] example of the training
  data), else returns None."""
  name = type(model).__name__
  for key in ("condition", "target"):
    if key not in batch:
      raise ModelError(f"the batch has no {key!r}: a CVAE batch is "
                       "{'condition': x, 'target': y, ...}")
  for method in METHODS:
    if not callable(getattr(model, method, None)):
      raise ModelError(f"{name} has no {method}; subclass "
                       "cvae_jax.models.cvae.CVAE and define it")
  target, condition = batch["target"], batch["condition"]
  num = len(target)
  rng = jax.random.PRNGKey(0)

  def trace(what: str, fn, *args):
    try:
      return jax.eval_shape(fn, *args)
    except NotImplementedError as e:
      raise ModelError(f"{name} does not define {_raising_method(e) or what}; "
                       "see cvae_jax.models.cvae") from None
    except Exception as e:  # pylint: disable=broad-except
      if "not a valid JAX type" in str(e):
        raise ModelError(f"{name}: {what} returned a value that is not a JAX "
                         "pytree; make the likelihood a NamedTuple or a "
                         "flax.struct.dataclass") from None
      raise ModelError(f"{name}: {what} failed: {first_line(e)}") from None

  params = trace("init(rng, target, condition) (its __call__ must run every "
                 "net)", model.init, rng, target, condition)
  apply = lambda method: (lambda p, *a: model.apply(p, *a, method=method))
  features = trace("encode(condition)", apply("encode"), params, condition)
  prior = trace("prior_from_features(features)", apply("prior_from_features"),
                params, features)
  if not isinstance(prior, distributions.DiagonalGaussian):
    raise ModelError(f"{name}.prior_from_features returned {type(prior).__name__}; "
                     "it must return a distributions.DiagonalGaussian")
  if prior.mean.ndim != 2 or prior.mean.shape[0] != num or (
      prior.log_variance.shape != prior.mean.shape):
    raise ModelError(f"{name}.prior_from_features: mean {tuple(prior.mean.shape)}"
                     f", log_variance {tuple(prior.log_variance.shape)}; both "
                     f"must be [batch, latent] = [{num}, latent]")
  posterior = trace("recognition_from_features(target, features)",
                    apply("recognition_from_features"), params, target, features)
  if not isinstance(posterior, distributions.DiagonalGaussian) or (
      posterior.mean.shape != prior.mean.shape):
    raise ModelError(f"{name}.recognition_from_features: {_shape(posterior)}; it "
                     f"must return a DiagonalGaussian shaped as the prior's "
                     f"{tuple(prior.mean.shape)}")
  latent = prior.mean.shape[-1]
  for z_shape in ((num, latent), (num_samples, num, latent)):
    z = jnp.zeros(z_shape, prior.mean.dtype)
    what = f"generation_from_features(z {list(z_shape)}, features)"
    if len(z_shape) == 3:
      what += (" (z may have leading sample axes: broadcast the features "
               "against z.shape[:-1])")
    likelihood = trace(what, apply("generation_from_features"), params, z, features)
    if not callable(getattr(likelihood, "log_prob", None)):
      raise ModelError(f"{name}.generation_from_features returned "
                       f"{type(likelihood).__name__}, which has no log_prob; "
                       "return a likelihood such as distributions.Bernoulli(logits)")
    log_prob = trace(f"the likelihood's log_prob(target) at z {list(z_shape)}",
                     lambda l: estimators.batch_log_likelihood(l, batch), likelihood)
    if tuple(log_prob.shape) != z_shape[:-1]:
      raise ModelError(
          f"{name}: log p(y | x, z) at z {list(z_shape)} has shape "
          f"{tuple(log_prob.shape)}, expected {z_shape[:-1]} (one value per z: "
          "sum over the target's event axes)")
  for method in ("sample", "mean"):
    if not hasattr(type(likelihood), method):
      raise ModelError(f"{name}'s likelihood {type(likelihood).__name__} has no "
                       f"{method}; sampling needs log_prob, sample and mean")
