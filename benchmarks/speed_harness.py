"""What the speed scripts share: a jitted, donated train step of the
library's trainer timed in steady state, and interleaved rounds of several
runners (so that they share the machine's load)."""

import functools
import time

import jax

from cvae_jax.training import TrainState, trainer
from cvae_jax.training.optimizers import make_optimizer


def jax_step_runner(config, params, loss_fn, arrays, compiler_options=None):
  """(compile seconds, run(num_steps) -> seconds per step) of
  `trainer.train_step` on fixed `arrays`, with the config's optimiser."""
  optimizer = make_optimizer(config.optimizer, config.learning_rate)
  state = TrainState.create(params, optimizer, jax.random.PRNGKey(1))
  step = jax.jit(functools.partial(trainer.train_step, loss_fn, optimizer),
                 donate_argnums=0)
  arrays = jax.device_put(arrays)
  start = time.perf_counter()
  step = step.lower(state, arrays).compile(compiler_options)
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
