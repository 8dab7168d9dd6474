"""The train state: everything a resumed run needs, and nothing else."""

from typing import Any

import flax.struct
import jax
import optax

__all__ = ["TrainState"]


@flax.struct.dataclass
class TrainState:
  """Params, optimiser state, step and RNG.

  The data position is not stored: it is a function of `step` (epoch =
  step // steps_per_epoch; each epoch's order is a permutation seeded by the
  epoch), so restoring `step` restores it.

  Attributes:
    step: int32 scalar, the number of updates done.
    params: the model's variables, as `init` returns them.
    opt_state: the optimiser's state (an `optax.OptState`).
    rng: uint32[2]; the key of step s is `fold_in(rng, s)`.
    loss_state: what a stateful loss carries from step to step (GECO's
      multiplier, `cvae_jax.geco`), or None for a plain loss.
  """

  step: jax.Array
  params: Any
  # Not `optax.OptState`: that alias's recursive forward reference cannot be
  # resolved from here, so the API reference could not render it.
  opt_state: Any
  rng: jax.Array
  loss_state: Any = None

  @classmethod
  def create(cls, params, optimizer: optax.GradientTransformation,
             rng: jax.Array, loss_state: Any = None) -> "TrainState":
    """Step 0, `optimizer.init(params)`, `rng` and the loss's initial state."""
    return cls(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
               opt_state=optimizer.init(params), rng=rng, loss_state=loss_state)
