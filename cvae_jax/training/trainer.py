"""The one generic training loop.

It knows nothing about CVAEs: it gets `init_fn(rng) -> params`, a loss
function `loss_fn(params, batch, rng, step) -> (scalar, {name: scalar})`
(`step`: the global step, traced, for a loss that anneals, e.g. a KL
weight; a loss that does not anneal ignores it), training data, a config
and the hooks to call, and runs data-parallel over every device with
`jax.jit` on a 1-D mesh (batch sharded, parameters replicated). The same
code runs on CPU, GPU and TPU, in one process or in several under
`jax.distributed` (hosts of a TPU pod or a GPU cluster): there the mesh
spans every process's devices, device-resident data is on every host and
each process gathers its slice of the same global permutation (so the run
equals the one-process run with the same global batch), streamed data is
read by each process from its own shard of the epoch, every process saves
checkpoints (orbax writes one set of files), and only process 0 prints and
writes logs and metric files.

Steps run up to `steps_per_dispatch` at a time inside one `lax.scan`;
device-resident data is gathered by a permutation inside jit, streamed data is
stacked on the host. A dispatch also ends at every `log_every_steps` boundary,
so each log line is printed as soon as its step is done (one dispatch per 100
steps costs nothing measurable). Checkpoints are written every
`checkpoint_every_steps`, at each epoch end, when a hook asks (a stop
signal) and at the end; a rerun with the same workdir resumes from the
latest and ends with the same result as an uninterrupted run.

The loop itself only restores, dispatches steps, checks the losses and
parameters are finite and checkpoints; everything else is a hook
(`cvae_jax.training.hooks`) that the caller passes and the loop calls at
fixed points without knowing which it is: the per-epoch evaluation, the
run-identity check, the run history, the log lines and progress bar,
TensorBoard scalars, early stopping. `hooks.standard(config, evaluate=...,
report=..., identity=...)` is the set a training command uses; the loop
adds `hooks.StopSignals` itself (SIGINT / SIGTERM become a checkpoint and
`Interrupted`).

Config fields read (`cvae_jax.configs.trainer_defaults()` has each at its
default; a missing required one is a ConfigError naming it): batch_size,
num_epochs, seed, optimizer, learning_rate, steps_per_dispatch,
log_every_steps, checkpoint_every_steps, keep_checkpoints; optionally
lr_schedule and gradient_clip_norm (`training.optimizers.from_config`; or
pass any optax transformation as `optimizer`), log_metrics ("mean", the
default: a log line and a TensorBoard point show the mean of each metric
over the steps since the previous one; "last": that step's own values),
compute_dtype ("float32", the default, or "bfloat16": mixed
precision, see `mixed_precision`), early_stopping_metric /
early_stopping_patience (validated here, acted on by `hooks.EarlyStopping`:
when the metric, a key of the evaluated metrics, lower is better, has not
improved for `patience` epochs, training stops and the best epoch's state,
kept in `workdir/best`, is what `train` returns) and cpu_convolutions
("auto", "ynnpack" or "eigen": the library XLA:CPU runs the step's
convolutions on, `cvae_jax.backends`).
"""

import functools
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cvae_jax.errors import (ConfigError, TrainingDivergedError,
                             require_positive_ints)
from cvae_jax import backends, schedules, sharding
from cvae_jax.training import hooks as hooks_lib
from cvae_jax.training.checkpointing import Checkpointer
from cvae_jax.training.hooks import Progress
from cvae_jax.training.input import InMemoryData, StreamingData
from cvae_jax.training import optimizers
from cvae_jax.training.state import TrainState

__all__ = ["train", "LossFn", "REQUIRED_FIELDS", "LOG_METRICS",
           "validate_trainer_config", "COMPUTE_DTYPES", "compute_dtype",
           "mixed_precision", "train_step", "dispatch_end"]

_MAX_STREAMED_STEPS = 100
# (params, batch, rng, step) -> (scalar loss, {name: scalar}).
LossFn = Callable[[Any, dict, jax.Array, jax.Array], tuple[jax.Array, dict]]


REQUIRED_FIELDS = ("batch_size", "num_epochs", "seed", "optimizer", "learning_rate",
                   "steps_per_dispatch", "log_every_steps",
                   "checkpoint_every_steps", "keep_checkpoints")
LOG_METRICS = ("mean", "last")


def validate_trainer_config(config: ml_collections.ConfigDict,
                            devices: Sequence[jax.Device] | None = None) -> None:
  """Raises ConfigError naming the field and the fix for missing or
  impossible values, including a batch_size that does not divide by the
  mesh's device count (`devices`, default every device of every process)."""
  for field in REQUIRED_FIELDS:
    if field not in config:
      raise ConfigError(f"the config has no {field!r}, which the trainer reads; "
                        "add it, or start the config from "
                        "cvae_jax.configs.trainer_defaults()")
  if config.get("log_metrics", "mean") not in LOG_METRICS:
    raise ConfigError(f"log_metrics must be one of {', '.join(LOG_METRICS)}, got "
                      f"{config.log_metrics!r}; set --config.log_metrics")
  require_positive_ints(config, (
      "batch_size", "num_epochs", "steps_per_dispatch", "log_every_steps",
      "checkpoint_every_steps", "keep_checkpoints"))
  sharding.check_batch_divides(config.batch_size, sharding.make_mesh(devices))
  if config.get("early_stopping_metric"):
    require_positive_ints(config, ("early_stopping_patience",))
  optimizers.from_config(config, total_steps=1)
  schedules.kl_weight(config)  # The task's loss reads it; checked here for all.
  compute_dtype(config)
  backends.convolution_library(config)


# Mixed precision: the names `compute_dtype` may take.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config: ml_collections.ConfigDict):
  """The dtype of activations and matmuls: config.compute_dtype (default
  float32), validated."""
  name = config.get("compute_dtype", "float32")
  if name not in COMPUTE_DTYPES:
    raise ConfigError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, "
                      f"got {name!r}; set --config.compute_dtype")
  return COMPUTE_DTYPES[name]


def _cast_floats(tree, dtype):
  """Floating-point leaves of `tree` as `dtype`; integers untouched."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
      tree)


def mixed_precision(loss_fn: LossFn, dtype) -> LossFn:
  """`loss_fn` run on a `dtype` copy of the params and the batch.

  The float32 master params, their gradients (the cast's transpose brings
  them back to float32) and the optimiser state stay float32; the library's
  log-densities upcast to at least float32 before they sum, and the loss is
  returned as float32. bfloat16 is the setting for TPUs (and recent GPUs);
  on CPU it runs, but is not faster.
  """
  if dtype == jnp.float32:
    return loss_fn

  def cast_loss_fn(params, batch, rng, step=0, *loss_state):
    loss, aux = loss_fn(_cast_floats(params, dtype), _cast_floats(batch, dtype),
                        rng, step, *loss_state)
    return _cast_floats((loss, aux), jnp.float32)
  return cast_loss_fn


def train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                state: TrainState, batch: dict) -> tuple[TrainState, dict]:
  """One update; `loss_fn` gets the state's step (and its `loss_state`, when
  not None: then it returns (loss, (metrics, next loss_state)))."""
  rng = jax.random.fold_in(state.rng, state.step)
  stateful = () if state.loss_state is None else (state.loss_state,)
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, batch, rng, state.step, *stateful)
  metrics, loss_state = aux if stateful else (aux, None)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=opt_state, loss_state=loss_state)
  return new_state, {"loss": loss, **metrics}


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _check_finite_losses(losses: np.ndarray, step: int,
                         checkpointer: Checkpointer) -> None:
  """TrainingDivergedError naming the first step of a dispatch from `step`
  whose loss is not finite; the last good checkpoint is kept."""
  if not np.all(np.isfinite(losses)):
    bad = step + int(np.argmin(np.isfinite(losses)))
    raise TrainingDivergedError(
        f"loss became {losses[bad - step]} at step {bad}; the last good "
        f"checkpoint (step {checkpointer.latest_step()}) is kept in "
        f"{checkpointer.directory}; lower --config.learning_rate or check the data")


def dispatch_end(config: ml_collections.ConfigDict, step: int,
                  steps_per_epoch: int) -> int:
  """The step in the epoch where the dispatch from global `step` ends: at most
  `steps_per_dispatch` on, at the epoch's end, at the next checkpoint and at
  the next log boundary (so a log line is printed when its step is done)."""
  epoch, start = divmod(step, steps_per_epoch)
  next_checkpoint = ((step // config.checkpoint_every_steps + 1)
                     * config.checkpoint_every_steps - epoch * steps_per_epoch)
  next_log = (start // config.log_every_steps + 1) * config.log_every_steps
  return min(steps_per_epoch, start + config.steps_per_dispatch,
             next_checkpoint, next_log)


def _one_step_without_loop(body, state, x):
  """body(state, x) with its metrics given a leading axis of 1, as a scan of
  one step returns them, but with no XLA while loop: XLA:CPU runs
  convolutions inside a loop body ~10-30x slower than outside one (measured
  on the segmentation CNNs), so conv nets on CPU use steps_per_dispatch=1."""
  state, metrics = body(state, x)
  return state, jax.tree.map(lambda m: m[None], metrics)


RunChunk = Callable[[TrainState, int, int, int], tuple[TrainState, dict]]


def _in_memory_runner(step_fn, data: InMemoryData, batch_size: int,
                      mesh: jax.sharding.Mesh, data_rng: jax.Array,
                      compiler_options: dict | None = None) -> RunChunk:
  """run_chunk(state, epoch, start, num_steps): steps start..start+num_steps-1
  of `epoch` in one dispatch, batches gathered on device by a permutation."""
  replicated = sharding.replicated(mesh)
  batch_sharding = sharding.batch_sharded(mesh)
  arrays = jax.device_put(data.arrays, replicated)

  @functools.partial(jax.jit, out_shardings=replicated)
  def epoch_permutation(epoch):
    return jax.random.permutation(jax.random.fold_in(data_rng, epoch),
                                  data.num_examples)

  @functools.partial(jax.jit, static_argnums=4, donate_argnums=0,
                     out_shardings=replicated, compiler_options=compiler_options)
  def run(state, arrays, permutation, start, num_steps):
    def body(state, i):
      indices = jax.lax.dynamic_slice(
          permutation, ((start + i) * batch_size,), (batch_size,))
      indices = jax.lax.with_sharding_constraint(indices, batch_sharding)
      batch = jax.tree.map(lambda a: jnp.take(a, indices, axis=0), arrays)
      return step_fn(state, batch)
    if num_steps == 1:  # No loop: see `_one_step_without_loop`.
      return _one_step_without_loop(body, state, 0)
    return jax.lax.scan(body, state, jnp.arange(num_steps))

  cached = {}  # The current epoch's permutation.

  def run_chunk(state, epoch, start, num_steps):
    if epoch not in cached:
      cached.clear()
      cached[epoch] = epoch_permutation(epoch)
    return run(state, arrays, cached[epoch], start, num_steps)
  return run_chunk


def _streaming_runner(step_fn, data: StreamingData, batch_size: int,
                      mesh: jax.sharding.Mesh, data_rng: jax.Array,
                      compiler_options: dict | None = None) -> RunChunk:
  """run_chunk as `_in_memory_runner`, from host batches stacked per dispatch."""
  stacked_sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(None, sharding.DATA_AXIS))

  @functools.partial(jax.jit, donate_argnums=0,
                     out_shardings=sharding.replicated(mesh),
                     compiler_options=compiler_options)
  def run(state, batches):
    if len(jax.tree.leaves(batches)[0]) == 1:
      return _one_step_without_loop(
          step_fn, state, jax.tree.map(lambda b: b[0], batches))
    return jax.lax.scan(step_fn, state, batches)

  stream = {"position": None, "batches": None}

  def run_chunk(state, epoch, start, num_steps):
    if stream["position"] != (epoch, start):  # A new epoch, or a resume.
      seed = int(jax.random.randint(jax.random.fold_in(data_rng, epoch), (),
                                    0, 2**31 - 1))
      count = jax.process_count()
      stream["batches"] = data.batches(seed, batch_size // count, start,
                                       (jax.process_index(), count))
    stream["position"] = (epoch, start + num_steps)
    metrics = []
    # At most `_MAX_STREAMED_STEPS` batches are stacked on the host at once.
    for begin in range(0, num_steps, _MAX_STREAMED_STEPS):
      count = min(_MAX_STREAMED_STEPS, num_steps - begin)
      batches = [next(stream["batches"]) for _ in range(count)]
      stacked = jax.tree.map(lambda *b: np.stack(b), *batches)
      # Each process's batches are its slice of the global batch.
      state, piece = run(state, jax.make_array_from_process_local_data(
          stacked_sharding, stacked))
      metrics.append(piece)
    return state, jax.tree.map(lambda *m: jnp.concatenate(m), *metrics)
  return run_chunk


def train(config: ml_collections.ConfigDict, workdir: str | Path,
          init_fn: Callable[[jax.Array], Any], loss_fn: LossFn,
          data: InMemoryData | StreamingData,
          hooks: Sequence[hooks_lib.Hook] = (),
          optimizer: optax.GradientTransformation | None = None,
          devices: Sequence[jax.Device] | None = None,
          loss_state: Any = None) -> TrainState:
  """Trains (or resumes training) and returns the final state.

  Args:
    config: the trainer fields listed in the module docstring.
    workdir: checkpoints (and whatever the hooks write) go here.
    init_fn: rng -> params.
    loss_fn: (params, batch, rng, step) -> (scalar loss, dict of scalar
      metrics); `batch` is a dict of [batch_size, ...] arrays, `step` the
      global step (an int32 scalar under jit).
    data: device-resident or streamed training examples.
    hooks: `hooks.Hook`s, called in this order at each point of the loop
      (see `cvae_jax.training.hooks`); `hooks.standard(config, ...)` is the
      usual set. `hooks.StopSignals` is added after them.
    optimizer: any optax transformation (a chain, a schedule inside); None:
      `optimizers.from_config(config)`. A passed one is recorded in the run
      identity as "custom"; resuming needs the same state structure.
    devices: the mesh's devices (default: every device of every process).
    loss_state: the initial state of a stateful loss (a pytree, kept in
      `TrainState.loss_state` and checkpointed): `loss_fn` is then
      (params, batch, rng, step, loss_state) -> (loss, (metrics, next
      loss_state)). None: a plain loss.

  Returns:
    The state the last hook's `end` returned (the final one, or the best
    epoch's under early stopping), as numpy arrays.

  Raises:
    ConfigError: impossible config values, or a hook refusing the run.
    TrainingDivergedError: a non-finite loss; the last good checkpoint is kept.
    Interrupted: SIGINT or SIGTERM (its `signum`); a checkpoint was saved first.
    SecondSignal: a second one; nothing was saved.
  """
  validate_trainer_config(config, devices)
  mesh = sharding.make_mesh(devices)
  batch_size = config.batch_size
  steps_per_epoch = data.num_examples // batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"batch_size={batch_size} is larger than the "
                      f"{data.num_examples} training examples; lower "
                      "--config.batch_size")
  total_steps = config.num_epochs * steps_per_epoch
  workdir = Path(workdir).expanduser().absolute()

  # What a checkpoint's step and optimiser state mean (hooks.RunIdentity).
  identity = dict(batch_size=batch_size, seed=config.seed,
                  num_examples=data.num_examples)
  if optimizer is None:
    optimizer = optimizers.from_config(config, total_steps)
    identity.update(optimizers.structure(config))
  else:
    identity.update(optimizer="custom")
  init_rng, train_rng, data_rng = jax.random.split(
      jax.random.PRNGKey(config.seed), 3)
  replicated = sharding.replicated(mesh)
  state = jax.jit(
      lambda rng: TrainState.create(init_fn(rng), optimizer, train_rng, loss_state),
      out_shardings=replicated)(init_rng)

  step_fn = functools.partial(
      train_step, mixed_precision(loss_fn, compute_dtype(config)), optimizer)
  make_runner = (_in_memory_runner if isinstance(data, InMemoryData)
                 else _streaming_runner)
  run_chunk = make_runner(step_fn, data, batch_size, mesh, data_rng,
                          backends.compiler_options(config))

  checkpointer = Checkpointer(workdir, config.keep_checkpoints)
  every_hook = [*hooks, hooks_lib.StopSignals()]
  run = hooks_lib.Run(config, workdir, steps_per_epoch, total_steps,
                      data.num_examples, identity, checkpointer.latest_step())

  def tell(line):
    for hook in every_hook:
      hook.message(line)

  try:
    for hook in every_hook:
      hook.start(run)
    restored = checkpointer.restore_latest(state)
    if restored is not None:
      state = restored
    step = int(state.step)
    for hook in every_hook:
      hook.begin(state, resumed=restored is not None)
    if restored is not None:
      tell(f"resumed from checkpoint of step {step} in {checkpointer.directory}")
    compiled = set()
    while step < total_steps:
      if any([h.should_stop(step) for h in every_hook]):  # Each is asked.
        break
      epoch, start = divmod(step, steps_per_epoch)
      num_steps = dispatch_end(config, step, steps_per_epoch) - start
      if num_steps not in compiled:  # jit compiles per scan length.
        compiled.add(num_steps)
        tell(f"compiling the train step ({num_steps} steps per dispatch)...")
      state, metrics = run_chunk(state, epoch, start, num_steps)
      metrics = jax.device_get(metrics)
      _check_finite_losses(metrics["loss"], step, checkpointer)
      steps = [Progress(step + i, epoch, start + i, steps_per_epoch, batch_size,
                        data.num_examples) for i in range(num_steps)]
      for hook in every_hook:
        hook.after_steps(steps, metrics)
      step += num_steps
      epoch_done = step % steps_per_epoch == 0
      if epoch_done:
        eval_metrics = _evaluate(every_hook, state, epoch)
        if eval_metrics is not None:
          for hook in every_hook:
            hook.after_epoch(state, epoch, eval_metrics)
      wanted = any([h.wants_checkpoint(step) for h in every_hook])  # Each is asked.
      if epoch_done or step % config.checkpoint_every_steps == 0 or wanted:
        if not _all_finite(state.params):
          raise TrainingDivergedError(
              f"parameters became non-finite by step {step}; the last good "
              f"checkpoint (step {checkpointer.latest_step()}) is kept in "
              f"{checkpointer.directory}; lower --config.learning_rate")
        checkpointer.save(state)
        for hook in every_hook:
          hook.after_checkpoint(step, checkpointer.directory)
    for hook in every_hook:
      state = hook.end(state)
  finally:
    for hook in reversed(every_hook):
      hook.close()
    checkpointer.close()
  # Under jax.distributed, as numpy: the task evaluates on its local devices.
  return sharding.to_host(state)


def _evaluate(every_hook: Sequence[hooks_lib.Hook], state: TrainState,
              epoch: int) -> dict[str, float] | None:
  """The metrics of every hook that evaluates, in one dict; None when no
  hook evaluates (then no hook's `after_epoch` is called)."""
  merged = None
  for hook in every_hook:
    metrics = hook.evaluate(state, epoch)
    if metrics is None:
      continue
    merged = {} if merged is None else merged
    clash = sorted(set(merged) & set(metrics))
    if clash:  # Silently keeping one would hide a mistake.
      raise ValueError(f"two evaluating hooks return the metrics {clash}")
    merged.update(metrics)
  return merged
