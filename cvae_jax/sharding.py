"""The device mesh: batch sharded over every device of every process,
parameters replicated. With one process (the usual case) these are the local
devices; under `jax.distributed` (several hosts, or several processes on
one), the mesh spans all of them and each process feeds its own devices."""

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cvae_jax.errors import ConfigError

__all__ = ["DATA_AXIS", "make_mesh", "is_main_process", "to_host", "replicated",
           "batch_sharded", "check_batch_divides"]

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def is_main_process() -> bool:
  """True in the process that prints logs and writes metric files (0)."""
  return jax.process_index() == 0


def to_host(tree):
  """Arrays on a mesh that spans other processes -> numpy, so a process can
  use them alone (e.g. evaluation on its local devices); the trainer's state
  is replicated, so every process holds all of it. Other leaves unchanged."""
  def local(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x)
    return x
  return jax.tree.map(local, tree)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Shards the leading (batch) axis over the mesh."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
  num_devices = mesh.devices.size
  processes = len({d.process_index for d in mesh.devices.flat})
  where = ("local devices" if processes == 1
           else f"devices of {processes} processes")
  if batch_size % num_devices:
    raise ConfigError(
        f"batch_size={batch_size} does not divide by the {num_devices} {where}; "
        f"set --config.batch_size to a multiple of {num_devices}")
