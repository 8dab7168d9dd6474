"""What the timing scripts share: the train step timed in steady state,
interleaved rounds of runners (sharing the machine's load), a clock on
`trainer.train`'s epochs, the records of the machine and runs."""

import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from cvae_jax import backends
from cvae_jax.training import TrainState, hooks, optimizers, trainer

# A speed script's --jax_variants: the step as the trainer compiles it, or
# with its convolutions on one library (`backends.library_options`).
VARIANTS = ("jax", "jax_ynnpack", "jax_eigen")


def jax_step_runner(config, params, loss_fn, arrays, variant: str = "jax"):
  """(compile seconds, run(num_steps) -> seconds per step) of
  `trainer.train_step` on fixed `arrays` from a copy of `params`, with the
  config's optimiser (its schedules and clipping), compiled as the trainer
  compiles it or as the VARIANTS entry `variant` says."""
  compiler_options = (backends.compiler_options(config) if variant == "jax" else
                      backends.library_options(variant.removeprefix("jax_")))
  optimizer = optimizers.from_config(config, total_steps=10**6)
  state = TrainState.create(jax.tree.map(jnp.copy, params), optimizer,
                            jax.random.PRNGKey(1))
  step = jax.jit(functools.partial(trainer.train_step, loss_fn, optimizer),
                 donate_argnums=0)
  arrays = jax.device_put(arrays)
  start = time.perf_counter()
  step = step.lower(state, arrays).compile(compiler_options or None)
  compile_seconds = time.perf_counter() - start
  holder = [state]

  def run(num_steps):
    state = holder[0]
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(num_steps):
      state, metrics = step(state, arrays)
    jax.block_until_ready((state, metrics))
    holder[0] = state
    return (time.perf_counter() - start) / num_steps
  return compile_seconds, run


def interleaved_best(runners: dict, num_steps: int, repeats: int) -> dict:
  """Each runner's best seconds per step over `repeats` interleaved rounds."""
  for name, run in runners.items():
    print(f"  warm-up {name}...", flush=True)
    run(1)
  best = {name: float("inf") for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      best[name] = min(best[name], run(num_steps))
  return best


class EpochClock(hooks.Hook):
  """Times a `trainer.train` run: `begun` when the state is ready; per epoch
  `first_read` (its first dispatch read back: compilation is behind it) and
  `ended` (its last, before the checkpoint); `first_steps` per dispatch."""

  def __init__(self):
    self.begun, self.first_read, self.ended, self.first_steps = None, {}, {}, 0

  def begin(self, state, resumed):
    self.begun = time.perf_counter()

  def after_steps(self, steps, metrics):
    now, first, last = time.perf_counter(), steps[0], steps[-1]
    if first.step_in_epoch == 0:
      self.first_read[first.epoch], self.first_steps = now, len(steps)
    if last.step_in_epoch == last.steps_per_epoch - 1:
      self.ended[last.epoch] = now


def timed_training(config, workdir, init_fn, loss_fn, data) -> EpochClock:
  """The EpochClock of a `trainer.train` (no mid-epoch checkpoints or evals)."""
  config = config.copy_and_resolve_references()
  config.checkpoint_every_steps = 10**9
  config.early_stopping_metric = ""  # Nothing is evaluated.
  clock = EpochClock()
  trainer.train(config, workdir, init_fn, loss_fn, data, hooks=[clock])
  return clock


def cpu_model() -> str:
  cpuinfo = Path("/proc/cpuinfo")
  names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
           if line.startswith("model name")] if cpuinfo.exists() else []
  return names[0] if names else platform.processor() or platform.machine()


def machine_record(json_path: str | Path | None) -> dict:
  """The figures already in `json_path` (what is not run now keeps its
  record), with this machine's devices, CPU and jax (and torch) versions."""
  figures = (json.loads(Path(json_path).read_text())
             if json_path and Path(json_path).exists() else {})
  figures.update(devices=[str(d) for d in jax.local_devices()], jax=jax.__version__,
                 cpu_count=os.cpu_count(), machine=cpu_model())
  if "torch" in sys.modules:
    figures["torch"] = sys.modules["torch"].__version__
  return figures


def run_info() -> dict:
  """A timed run's record before it runs (command, XLA_FLAGS, date, load)."""
  return {"command": " ".join(sys.argv[1:]),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "date": time.strftime("%Y-%m-%d %H:%M"),
          "load_average_before": os.getloadavg(), "start": time.time()}


def finished(record: dict) -> dict:
  """`record` (from run_info) with the load average after and wall seconds."""
  record = dict(record)
  start = record.pop("start")
  return {**record, "load_average_after": os.getloadavg(), "wall_s": time.time() - start}


def write_json(json_path: str | Path | None, figures: dict) -> None:
  if json_path:
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
