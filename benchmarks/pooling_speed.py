"""The train step with `cvae_jax.models.pooling.max_pool` beside the
same step with nn.max_pool, in one process.

  python -m benchmarks.pooling_speed
  python -m benchmarks.pooling_speed --pooling_models=segmentation_cub \
      --pooling_steps=1 --pooling_rounds=3

For each model (`benchmarks.profile_step`'s configs and random batches), two
steps are compiled as the trainer compiles them: "library" with
pooling.max_pool replaced, while it is traced, by nn.max_pool (what the
models called before), and "pooling" as the models are. Rounds alternate
between the two; each figure is the best round's ms per step. Same values and gradients: see
tests/test_pooling.py.
"""

import subprocess
import sys

from absl import app, flags
import flax.linen as nn

from benchmarks import profile_step, speed_harness
from cvae_jax.models import pooling

# Named apart from the speed scripts' flags, which profile_step.setup imports.
_MODELS = flags.DEFINE_list("pooling_models", ["bbox", "segmentation_offline"],
                            "profile_step's model names.")
_STEPS = flags.DEFINE_integer("pooling_steps", 20, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("pooling_rounds", 4, "Rounds; the best counts.")

LIBRARY = {"max_pool": lambda x, window: nn.max_pool(x, (window, window),
                                                    strides=(window, window))}


def runners(name: str) -> dict:
  ours = {fn: getattr(pooling, fn) for fn in LIBRARY}
  result = {}
  for label, functions in (("library", LIBRARY), ("pooling", ours)):
    for fn, impl in functions.items():
      setattr(pooling, fn, impl)
    try:  # jax_step_runner compiles now, under these functions.
      config, params, loss_fn, arrays, _, _ = profile_step.setup(name)
      _, result[label] = speed_harness.jax_step_runner(config, params, loss_fn, arrays)
    finally:
      for fn, impl in ours.items():
        setattr(pooling, fn, impl)
  return result


def main(argv):
  del argv
  if len(_MODELS.value) > 1:  # One process per model (see the flags).
    print("| model | library ops, ms/step | pooling.max_pool, ms/step | speed-up |\n"
          "|---|---|---|---|", flush=True)
    for name in _MODELS.value:
      subprocess.run([sys.executable, "-m", "benchmarks.pooling_speed",
                      f"--pooling_models={name}", f"--pooling_steps={_STEPS.value}",
                      f"--pooling_rounds={_ROUNDS.value}"], check=True)
    return
  (name,) = _MODELS.value
  best = speed_harness.interleaved_best(runners(name), _STEPS.value, _ROUNDS.value)
  print(f"| {name} | {1e3 * best['library']:,.2f} | {1e3 * best['pooling']:,.2f} | "
        f"{best['library'] / best['pooling']:.2f}x |", flush=True)


if __name__ == "__main__":
  app.run(main)
