"""The train step with `cvae_jax.models.resampling`'s max pooling beside the
same step with nn.max_pool, in one process.

  python -m benchmarks.resampling_speed
  python -m benchmarks.resampling_speed --resampling_models=segmentation_cub \
      --resampling_steps=1 --resampling_rounds=3

For each model (`benchmarks.profile_step`'s configs and random batches), two
steps are compiled as the trainer compiles them: "library" with
resampling.max_pool replaced, while it is traced, by nn.max_pool (what the
models called before), and "resampling" as the models are. Rounds alternate between the two; each
figure is the best round's ms per step. Same values and gradients: see
tests/test_resampling.py.
"""

import subprocess
import sys

from absl import app, flags
import flax.linen as nn

from benchmarks import profile_step, speed_harness
from cvae_jax.models import resampling

# Named apart from the speed scripts' flags, which profile_step.setup imports.
_MODELS = flags.DEFINE_list("resampling_models", ["bbox", "segmentation_offline"],
                            "profile_step's model names.")
_STEPS = flags.DEFINE_integer("resampling_steps", 20, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("resampling_rounds", 4, "Rounds; the best counts.")

LIBRARY = {"max_pool": lambda x, window: nn.max_pool(x, (window, window),
                                                    strides=(window, window))}


def runners(name: str) -> dict:
  ours = {fn: getattr(resampling, fn) for fn in LIBRARY}
  result = {}
  for label, functions in (("library", LIBRARY), ("resampling", ours)):
    for fn, impl in functions.items():
      setattr(resampling, fn, impl)
    try:  # jax_step_runner compiles now, under these functions.
      config, params, loss_fn, arrays, _, _ = profile_step.setup(name)
      _, result[label] = speed_harness.jax_step_runner(config, params, loss_fn, arrays)
    finally:
      for fn, impl in ours.items():
        setattr(resampling, fn, impl)
  return result


def main(argv):
  del argv
  if len(_MODELS.value) > 1:  # One process per model (see the flags).
    print("| model | library ops, ms/step | resampling, ms/step | speed-up |\n"
          "|---|---|---|---|", flush=True)
    for name in _MODELS.value:
      subprocess.run([sys.executable, "-m", "benchmarks.resampling_speed",
                      f"--resampling_models={name}", f"--resampling_steps={_STEPS.value}",
                      f"--resampling_rounds={_ROUNDS.value}"], check=True)
    return
  (name,) = _MODELS.value
  best = speed_harness.interleaved_best(runners(name), _STEPS.value, _ROUNDS.value)
  print(f"| {name} | {1e3 * best['library']:,.2f} | {1e3 * best['resampling']:,.2f} | "
        f"{best['library'] / best['resampling']:.2f}x |", flush=True)


if __name__ == "__main__":
  app.run(main)
