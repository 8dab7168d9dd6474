"""Speed of the box CVAE's train step, JAX beside the same model in PyTorch
(benchmarks/pytorch_bbox.py), in one process.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.bbox_speed --json=docs/bbox_speed_cpu.json

train/configs/bbox.py (model=cvae, condition=image: 64x64 grey canvases,
convs 16, 32, 32, features and hidden 128, latent 2, batch 32), random
canvases and one box each: images/s and ms/step of one train step (forward
+ backward + Adam, one z ~ q), steady state:
  * jax: the task's `make_loss_fn` and the config's optax optimiser through
    the trainer's `train_step`, jitted, state donated;
  * torch_<n>_threads: the PyTorch model, torch.set_num_threads(n), started
    from the flax weights; the parameter counts must be equal and the
    per-box losses at the same z noise must agree to 1e-5 (both checked).
Runners are interleaved (`speed_harness.interleaved_best`); each figure is
the best of `--repeats` rounds of `--steps` steps after a warm-up step.
"""

import time

from absl import app, flags
import jax

from benchmarks import speed_harness
from benchmarks.pytorch_bbox import check_same_model, get_config, init_params, task_arrays
from cvae_jax.tasks import bbox

_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps per round.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds; the best one counts.")
_TORCH_THREADS = flags.DEFINE_list("torch_threads", ["1", "2"],
                                   "torch.set_num_threads values; [] skips torch.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")


def time_steps(config, num_steps: int, repeats: int, torch_threads) -> dict:
  from benchmarks import pytorch_bbox, pytorch_common  # pylint: disable=g-import-not-at-top
  arrays = pytorch_bbox.random_arrays(config)
  model = bbox.make_model(config)
  params = init_params(config, model)
  compile_seconds, jax_run = speed_harness.jax_step_runner(
      config, params, bbox.make_loss_fn(config, model), task_arrays(arrays))
  print(f"  compiled jax in {compile_seconds:.1f} s", flush=True)
  runners = {"jax": jax_run}
  jax_params = sum(x.size for x in jax.tree.leaves(params))
  torch_params = difference = None
  for threads in torch_threads:
    torch_model, runners[f"torch_{threads}_threads"] = pytorch_common.step_runner(
        pytorch_bbox.make_train_step, config, 1, threads, arrays, target="boxes")
    torch_params = pytorch_common.check_parameter_count("box CVAE", torch_model,
                                                        jax_params)
    if difference is None:
      difference = check_same_model(config, params, torch_model, arrays)
      print(f"  same weights and noise: per-box losses differ by {difference:.2g} "
            "(relative)", flush=True)
      if difference > 1e-5:
        raise AssertionError(f"flax and PyTorch differ by {difference}")
    pytorch_bbox.load_flax_params(torch_model, params)
  best = speed_harness.interleaved_best(runners, num_steps, repeats)
  return {"image_size": config.image_size, "batch_size": config.batch_size,
          "parameters": {"jax": jax_params, "torch": torch_params},
          "max_relative_difference_same_weights_and_noise": difference,
          "compile_s": {"jax": compile_seconds},
          **speed_harness.step_figures(best, config.batch_size, num_steps, repeats)}


def main(argv):
  del argv
  torch_threads = list(map(int, _TORCH_THREADS.value))
  figures = speed_harness.machine_record(_JSON.value, bool(torch_threads))
  info, start = speed_harness.run_info(), time.time()
  config = get_config()
  result = figures["offline"] = speed_harness.finished(
      {**info, **time_steps(config, _STEPS.value, _REPEATS.value, torch_threads)},
      start)
  speed_harness.print_result(f"box CVAE: {config.image_size}x{config.image_size}x1",
                             result)
  speed_harness.write_json(_JSON.value, figures)


if __name__ == "__main__":
  app.run(main)
