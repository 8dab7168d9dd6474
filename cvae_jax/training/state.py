"""The train state: everything a resumed run needs, and nothing else."""

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
  """Params, optimiser state, step and RNG.

  The data position is not stored: it is a function of `step` (epoch =
  step // steps_per_epoch; each epoch's order is a permutation seeded by the
  epoch), so restoring `step` restores it.
  """

  step: jax.Array  # int32 scalar, number of updates done.
  params: Any
  opt_state: optax.OptState
  rng: jax.Array  # uint32[2]; the key of step s is fold_in(rng, s).

  @classmethod
  def create(cls, params, optimizer: optax.GradientTransformation,
             rng: jax.Array) -> "TrainState":
    return cls(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
               opt_state=optimizer.init(params), rng=rng)
