"""Starting JAX's distributed runtime, so that one training run spans several
processes (hosts of a TPU pod, nodes of a GPU cluster, or processes on one
machine).

Every process runs the same command; `initialize` must come before anything
touches a device. Two forms:

* explicit, one line per process (any platform; CPU uses gloo):
    python -m train.mnist_label ... --coordinator_address=HOST:PORT \
        --num_processes=2 --process_id=0      # and --process_id=1
* automatic, where the platform describes the cluster (Cloud TPU pods,
  SLURM, ...): `--distributed` alone.
"""

import jax

from cvae_jax.errors import UserError


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               automatic: bool = False) -> bool:
  """Calls `jax.distributed.initialize` when asked to; returns whether it did.

  Raises:
    UserError: incomplete or impossible settings, or a runtime that cannot
      start (one line, with what to pass).
  """
  explicit = (coordinator_address, num_processes, process_id)
  if not automatic and all(v is None for v in explicit):
    return False
  if not automatic:
    if any(v is None for v in explicit):
      raise UserError("a multi-process run needs --coordinator_address=HOST:PORT, "
                      "--num_processes=N and --process_id=I (0..N-1) together, "
                      "or --distributed where the platform sets them")
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise UserError(f"--process_id={process_id} must be in 0..{num_processes - 1} "
                      f"for --num_processes={num_processes}")
  try:
    if automatic:
      jax.distributed.initialize()
    else:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes,
                                 process_id=process_id)
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"cannot start the distributed runtime ({first}); check "
                    "that every process got the same --coordinator_address and "
                    "--num_processes and its own --process_id") from e
  return True
