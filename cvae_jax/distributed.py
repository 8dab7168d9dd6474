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

Also the two coordination points the library needs: `main_process_first`
(building a dataset on a disk processes may share) and `sync` (a barrier).
"""

import contextlib
import sys

import jax

from cvae_jax.errors import UserError, first_line
from cvae_jax import sharding

__all__ = ["joined", "initialize", "main_process_first", "sync"]

_joined = False


def joined() -> bool:
  """Whether this process has joined a jax.distributed run (through
  `initialize`), even if it then raised."""
  return _joined


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               automatic: bool = False,
               timeout_s: int = 300) -> bool:
  """Calls `jax.distributed.initialize` when asked to; returns whether it did.

  A process whose --num_processes differs from the coordinator's is a one-line
  error once it has joined. A coordinator told to expect more processes than
  were started cannot be told apart from slow ones: JAX aborts every process
  after `timeout_s` with a DEADLINE_EXCEEDED on RegisterTask.

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
  if automatic:
    print("starting jax.distributed from the platform's settings",
          file=sys.stderr, flush=True)
  else:
    print(f"process {process_id} of {num_processes}: connecting to the "
          f"coordinator at {coordinator_address} (waits up to "
          f"{timeout_s} s for every process to join)", file=sys.stderr, flush=True)
  try:
    if automatic:
      jax.distributed.initialize(initialization_timeout=timeout_s)
    else:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes,
                                 process_id=process_id,
                                 initialization_timeout=timeout_s)
  except (RuntimeError, ValueError) as e:
    first = first_line(e)
    if automatic:
      raise UserError(f"cannot start the distributed runtime from the platform's "
                      f"settings ({first}); --distributed works where the platform "
                      "describes the cluster (Cloud TPU pods, SLURM), elsewhere "
                      "pass --coordinator_address, --num_processes and "
                      "--process_id") from e
    raise UserError(f"cannot start the distributed runtime ({first}); check "
                    "that every process got the same --coordinator_address and "
                    "--num_processes and its own --process_id") from e
  global _joined
  _joined = True
  # The coordinator (process 0) decides the count; JAX lets a process that
  # was told another one join anyway, and it would then shard data wrongly.
  if not automatic and jax.process_count() != num_processes:
    raise UserError(
        f"this process was started with --num_processes={num_processes} but the "
        f"coordinator at {coordinator_address} runs {jax.process_count()} "
        "processes; give every process the same --num_processes")
  return True


@contextlib.contextmanager
def main_process_first(name: str):
  """Runs the body in process 0 before the other processes run theirs:
  building a dataset on a disk several processes share would otherwise race
  (TFDS renames its finished folder into place; the second rename fails).
  After process 0, the others usually find the work done. One process: no-op.
  """
  if not sharding.is_main_process():
    sync(name)
  yield
  if sharding.is_main_process():
    sync(name)


def sync(name: str) -> None:
  """Waits until every process has called `sync` with this name; with one
  process, returns at once."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)
