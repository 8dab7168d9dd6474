"""GECO (Rezende & Viola 2018): the KL minimised under a constraint on the
reconstruction, with a Lagrange multiplier that adapts during training.

For a CVAE objective with terms "reconstruction" and "kl" (per example,
nats; `objectives.model_objective`), each step's loss is

  KL + lambda * C,   C = mean reconstruction over the batch - kappa,

where kappa > 0 is the reconstruction the model should reach (nats per
example). Between steps the multiplier follows the moving average of the
constraint relative to kappa, R_ma <- decay * R_ma + (1 - decay) * C / kappa
(R_ma = C / kappa at the first step):

  lambda <- clip(lambda * exp(rate * clip(R_ma, -1, 1)), *multiplier_bounds),

so lambda grows while the reconstruction is worse than kappa (the loss
attends to it) and shrinks once it is better (the KL takes over).
Rezende & Viola's update is lambda * exp(C_ma); measured in nats per image
(hundreds at the start of training) that overflows in a few steps, so here
the constraint is relative to kappa and a step changes lambda by at most a
factor exp(rate): proportional to the constraint near the bound, as theirs,
and bounded far from it. The
multiplier, the moving average and the step count are the loss's state:
the trainer keeps them in `TrainState.loss_state` and checkpoints them, so a
resumed run continues exactly where it stopped.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from cvae_jax.errors import ConfigError

__all__ = ["GECO", "geco_config", "from_config", "check_model"]


@dataclasses.dataclass(frozen=True)
class GECO:
  """See the module docstring; kappa in nats per example, > 0."""
  kappa: float
  decay: float = 0.99
  rate: float = 0.01
  initial_multiplier: float = 1.0
  multiplier_bounds: tuple = (1e-6, 1e6)

  def init(self) -> dict:
    """The state at step 0: {"multiplier", "constraint_average" (R_ma),
    "steps"}."""
    return {"multiplier": jnp.asarray(self.initial_multiplier, jnp.float32),
            "constraint_average": jnp.zeros((), jnp.float32),
            "steps": jnp.zeros((), jnp.int32)}

  def loss(self, reconstruction: jax.Array, kl: jax.Array,
           state: dict) -> tuple[jax.Array, dict, dict]:
    """(scalar loss, next state, {"geco_multiplier", "geco_constraint"}) from
    the batch's [batch] reconstruction and (already weighted) KL terms."""
    constraint = jnp.mean(reconstruction) - self.kappa
    observed = jax.lax.stop_gradient(constraint)
    relative = observed / self.kappa
    average = jnp.where(state["steps"] == 0, relative,
                        self.decay * state["constraint_average"]
                        + (1.0 - self.decay) * relative)
    multiplier = state["multiplier"]
    loss = jnp.mean(kl) + multiplier * constraint
    low, high = self.multiplier_bounds
    step = jnp.exp(self.rate * jnp.clip(average, -1.0, 1.0))
    next_state = {"multiplier": jnp.clip(multiplier * step, low, high),
                  "constraint_average": average, "steps": state["steps"] + 1}
    return loss, next_state, {"geco_multiplier": multiplier,
                              "geco_constraint": observed}


def geco_config(**overrides) -> ml_collections.ConfigDict:
  """`config.geco`: off by default (the plain -ELBO)."""
  return ml_collections.ConfigDict(dict(
      dict(enabled=False, kappa=0.0, decay=0.99, rate=0.01, initial_multiplier=1.0),
      **overrides))


def from_config(config: ml_collections.ConfigDict) -> GECO | None:
  """The `GECO` of `config.geco` when enabled, else None; ConfigError naming
  the field for impossible values."""
  settings = config.get("geco")
  if settings is None or not settings.enabled:
    return None
  if not 0.0 <= settings.decay < 1.0:
    raise ConfigError(f"geco.decay must be in [0, 1), got {settings.decay!r}; "
                      "set --config.geco.decay")
  if not (settings.kappa > 0 and settings.rate > 0 and settings.initial_multiplier > 0):
    raise ConfigError("geco.kappa, geco.rate and geco.initial_multiplier must be "
                      "positive; set --config.geco.kappa / .rate / .initial_multiplier")
  return GECO(float(settings.kappa), float(settings.decay), float(settings.rate),
              float(settings.initial_multiplier))


def check_model(config: ml_collections.ConfigDict, model) -> None:
  """ConfigError when `config.geco` is enabled for a model with no ELBO
  terms to constrain (neither a `CVAE` nor a model with `elbo_terms`)."""
  from cvae_jax.models.cvae import CVAE  # pylint: disable=g-import-not-at-top
  if from_config(config) is not None and not (
      isinstance(model, CVAE) or callable(getattr(model, "elbo_terms", None))):
    raise ConfigError(f"geco.enabled needs a CVAE (its reconstruction and KL); "
                      f"{type(model).__name__} has none; set --config.geco.enabled=False")
