"""Evaluating per-example functions over a whole split, data-parallel."""

from typing import Any, Callable

import sys

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from cvae_jax import sharding

__all__ = ["PerExampleFn", "process_batches", "map_over_batches",
           "map_dict_over_batches", "validation_loss_evaluator"]

PerExampleFn = Callable[[Any, dict, jax.Array], jax.Array]


def process_batches(num_batches: int) -> range:
  """The batch indices this process evaluates: every process_count()-th,
  from its index (all of them with one process)."""
  return range(jax.process_index(), num_batches, jax.process_count())


def map_over_batches(fn: PerExampleFn, params, arrays: dict[str, np.ndarray],
                     rng: jax.Array, batch_size: int,
                     mesh: jax.sharding.Mesh | None = None,
                     description: str | None = None) -> np.ndarray:
  """Applies jitted `fn(params, batch, rng) -> [batch, ...]` over all examples.

  Batches are sharded over the mesh's devices (default: this process's);
  the last batch is padded by repeating examples and the padding is dropped.
  Batch i uses fold_in(rng, i). Under jax.distributed every process
  evaluates its own disjoint share of the batches (`process_batches`) and
  the results are gathered, so each process returns all of them, the same
  as one process would. With a `description`, a progress bar (in images) is
  shown while stdout is a terminal, as the trainer's is.

  Returns:
    [num_examples, ...] results, in order.
  """
  mesh = sharding.make_mesh(jax.local_devices()) if mesh is None else mesh
  params = sharding.to_host(params)
  num_devices = mesh.devices.size
  batch_size = -(-batch_size // num_devices) * num_devices
  num_examples = len(next(iter(arrays.values())))
  jitted = jax.jit(fn, in_shardings=(sharding.replicated(mesh),
                                     sharding.batch_sharded(mesh), None))
  params = jax.device_put(params, sharding.replicated(mesh))
  starts = range(0, num_examples, batch_size)
  mine = process_batches(len(starts))
  results = []
  real = lambda i: min(batch_size, num_examples - starts[i])  # Less the padding.
  with tqdm.tqdm(total=sum(map(real, mine)), desc=description, unit="image",
                 leave=False, dynamic_ncols=True,
                 disable=description is None or not sys.stdout.isatty()) as bar:
    for n, i in enumerate(mine):
      indices = np.arange(starts[i], starts[i] + batch_size) % num_examples
      batch = {k: v[indices] for k, v in arrays.items()}
      results.append(jitted(params, batch, jax.random.fold_in(rng, i)))
      if n:  # One batch in flight while the bar follows the finished ones.
        results[-2].block_until_ready()
        bar.update(real(mine[n - 1]))
    bar.update(bar.total - bar.n)
  results = [np.asarray(r) for r in jax.device_get(results)]
  if jax.process_count() > 1:
    results = _gather_batches(results, len(starts), jitted, params, arrays,
                              batch_size, rng)
  return np.concatenate(results)[:num_examples]


def _gather_batches(mine: list[np.ndarray], num_batches: int, jitted, params,
                    arrays: dict, batch_size: int, rng) -> list[np.ndarray]:
  """Every process's batch results, in batch order (padded to the same
  count per process for the all-gather)."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  count = jax.process_count()
  per_process = -(-num_batches // count)
  example = {k: v[:batch_size] for k, v in arrays.items()}
  shape = jax.eval_shape(jitted, params, example, rng)
  padding = np.zeros(shape.shape, shape.dtype)
  local = np.stack(mine + [padding] * (per_process - len(mine)))
  gathered = np.asarray(multihost_utils.process_allgather(local))  # [P, per, ...]
  return [gathered[i % count, i // count] for i in range(num_batches)]


def validation_loss_evaluator(fn: PerExampleFn, arrays: dict[str, np.ndarray],
                              rng: jax.Array, batch_size: int):
  """The trainer's `evaluate` hook: (state, epoch) -> {"validation_loss": the
  mean of `fn` over `arrays`} (in `fn`'s units, e.g. nats per image). The
  same `rng` every epoch, so every epoch sees the same z draws and epochs
  compare fairly (early stopping)."""
  def evaluate(state, epoch: int) -> dict[str, float]:
    del epoch
    losses = map_over_batches(fn, state.params, arrays, rng, batch_size)
    return {"validation_loss": float(np.mean(losses))}
  return evaluate


def map_dict_over_batches(fn, params, arrays: dict[str, np.ndarray],
                          rng: jax.Array, batch_size: int,
                          description: str | None = None) -> dict:
  """`map_over_batches` for a fn(params, batch, rng) -> {name: [batch, ...]}
  (any shapes and dtypes; results come back as float32 numpy arrays).

  Returns:
    {name: [num_examples, ...]}.
  """
  names = []

  def flat(params, batch, rng):
    out = fn(params, batch, rng)
    names[:] = sorted(out)
    size = len(next(iter(batch.values())))
    return jnp.concatenate([out[k].reshape(size, -1)
                            .astype(jnp.float32) for k in names], -1)
  values = map_over_batches(flat, params, arrays, rng, batch_size,
                            description=description)
  example = jax.eval_shape(fn, params, {k: v[:1] for k, v in arrays.items()}, rng)
  result, begin = {}, 0
  for name in names:
    shape = example[name].shape[1:]
    width = int(np.prod(shape))
    result[name] = values[:, begin:begin + width].reshape(-1, *shape)
    begin += width
  return result
