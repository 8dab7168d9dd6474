"""What the speed scripts share: a jitted, donated train step of the
library's trainer timed in steady state, and interleaved rounds of several
runners (so that they share the machine's load)."""

import functools
import json
import os
import platform
import sys
import time

import jax

from cvae_jax import backends
from cvae_jax.training import TrainState, trainer
from cvae_jax.training.optimizers import make_optimizer


def jax_step_runner(config, params, loss_fn, arrays, compiler_options=None):
  """(compile seconds, run(num_steps) -> seconds per step) of
  `trainer.train_step` on fixed `arrays`, with the config's optimiser,
  compiled as the trainer compiles it (`backends.compiler_options(config)`:
  the library's choice of convolution library) or with the given
  `compiler_options` ({}: XLA's defaults)."""
  if compiler_options is None:
    compiler_options = backends.compiler_options(config)
  optimizer = make_optimizer(config.optimizer, config.learning_rate)
  state = TrainState.create(params, optimizer, jax.random.PRNGKey(1))
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


def variant_options(variant: str) -> dict | None:
  """The compiler options of a scripts' --jax_variants entry: "jax" (None:
  as the trainer compiles), "jax_ynnpack" or "jax_eigen" (that library for
  the convolutions, `backends.library_options`)."""
  return None if variant == "jax" else backends.library_options(
      variant.removeprefix("jax_"))


def interleaved_best(runners: dict, num_steps: int, repeats: int) -> dict:
  """Best seconds per step of each runner over `repeats` interleaved rounds,
  after one warm-up step each."""
  for name, run in runners.items():
    print(f"  warm-up {name}...", flush=True)
    run(1)
  best = {name: float("inf") for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      best[name] = min(best[name], run(num_steps))
  return best


def step_figures(best: dict, batch_size: int, num_steps: int,
                 repeats: int) -> dict:
  """The timing fields of a result: `best` is interleaved_best's seconds per
  step by runner name (one named "jax")."""
  return {
      "timed_steps_per_round": num_steps, "rounds": repeats,
      "ms_per_step": {k: 1e3 * v for k, v in best.items()},
      "images_per_s": {k: batch_size / v for k, v in best.items()},
      "time_relative_to_jax": {k: v / best["jax"] for k, v in best.items()
                               if k != "jax"},
  }


def machine_record(json_path: str | None, with_torch: bool) -> dict:
  """The figures a speed script writes: those already in `json_path` (a
  config not run now keeps its record), updated with this machine's devices,
  jax (and torch) versions and CPU."""
  figures = {}
  if json_path and os.path.exists(json_path):
    with open(json_path) as f:
      figures = json.load(f)
  figures.update(devices=[str(d) for d in jax.local_devices()],
                 jax=jax.__version__, cpu_count=os.cpu_count(),
                 machine=platform.processor() or platform.machine())
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top
    figures["torch"] = torch.__version__
  return figures


def run_info() -> dict:
  """What one timed config records before it runs: the command, XLA_FLAGS,
  the date and the load average (1, 5, 15 min); `load_average_after` is
  added by `finished`."""
  return {"command": " ".join(sys.argv[1:]),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "date": time.strftime("%Y-%m-%d %H:%M"),
          "load_average_before": os.getloadavg()}


def finished(record: dict, start: float) -> dict:
  """`record` with the load average after it and its wall seconds."""
  return {**record, "load_average_after": os.getloadavg(),
          "wall_s": time.time() - start}


def write_json(json_path: str | None, figures: dict) -> None:
  if json_path:
    with open(json_path, "w") as f:
      json.dump(figures, f, indent=2)
      f.write("\n")


def print_result(title: str, result: dict, images_digits: int = 1) -> None:
  """One timed config: its title (shapes), batch, parameter counts and load,
  then a Markdown table of images/s and ms/step per variant, with each
  variant's time relative to jax's."""
  print(f"\n{title}, batch {result['batch_size']}, parameters jax "
        f"{result['parameters']['jax']:,} / torch "
        f"{result['parameters']['torch'] or 0:,}; load average (1 min) "
        f"{result['load_average_before'][0]:.1f} -> "
        f"{result['load_average_after'][0]:.1f} on {os.cpu_count()} cores")
  print("| variant | images/s | ms/step | its time / jax's |\n"
        "| --- | --- | --- | --- |")
  for variant, ms in result["ms_per_step"].items():
    ratio = result["time_relative_to_jax"].get(variant)
    print(f"| {variant} | {result['images_per_s'][variant]:,.{images_digits}f} | "
          f"{ms:,.1f} | {'' if ratio is None else f'{ratio:.2f}'} |")
