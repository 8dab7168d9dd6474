"""Speed of the segmentation CVAE's train step, JAX beside the same model in
PyTorch (benchmarks/pytorch_segmentation.py), in one process.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.segmentation_speed --json=docs/segmentation_speed_cpu.json

For the offline config (train/configs/segmentation.py, 32x32 grey) and the
paper's CUB config (segmentation_cub.py, 128x128 RGB), batch 32, random
images and masks of those shapes: images/s and ms/step of one train step
(forward + backward + Adam, one latent sample), steady state:
  * jax: the task's `make_loss_fn` and the config's optax optimiser through
    the trainer's `train_step`, jitted, state donated;
  * jax_ynnpack, jax_eigen (diagnostic, --jax_variants): the same step with
    its convolutions on that library (`backends.library_options`), whatever
    `cpu_convolutions` chooses;
  * torch_<n>_threads: the PyTorch model, torch.set_num_threads(n), started
    from the flax weights; the parameter counts must be equal and the
    per-image losses at the same z noise must agree (both checked).
Variants are interleaved (jax, torch, jax, torch, ...) so that they share the
machine's load; each figure is the best of `--repeats` rounds of `--steps`
steps after a warm-up step (compilation excluded). `--layer_breakdown` also
times the CUB decoder's largest conv (48 -> 48 channels, 5x5, 128x128) alone:
forward, input gradient and weight gradient in both frameworks. Prints
Markdown tables; `--json=PATH` also writes the figures, keeping the records
of configs not run this time (so the slow CUB config can be its own run):

  python -m benchmarks.segmentation_speed --configs=offline --steps=10 \
      --json=docs/segmentation_speed_cpu.json
  python -m benchmarks.segmentation_speed --configs=cub --steps=1 --repeats=2 \
      --jax_variants=jax_ynnpack --nolayer_breakdown \
      --json=docs/segmentation_speed_cpu.json
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import pytorch_segmentation, speed_harness
from cvae_jax.models import segmentation as seg_models
from cvae_jax.tasks import segmentation
from train.configs import segmentation as offline_config
from train.configs import segmentation_cub as cub_config

_CONFIGS = flags.DEFINE_list("configs", ["offline", "cub"], "offline and/or cub.")
_STEPS = flags.DEFINE_list("steps", ["10", "1"],
                           "Timed steps per round, one entry per --configs.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds; the best one counts.")
_TORCH_THREADS = flags.DEFINE_list("torch_threads", ["2", "1"],
                                   "torch.set_num_threads values; [] skips torch.")
_JAX_VARIANTS = flags.DEFINE_list(
    "jax_variants", [], "Diagnostic variants timed beside the plain jax step: "
    "jax_ynnpack and/or jax_eigen (see the docstring).")
_LAYER_BREAKDOWN = flags.DEFINE_bool(
    "layer_breakdown", True, "Also time the CUB decoder's 48->48 conv alone.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")
_EVAL_SAMPLES = flags.DEFINE_integer(
    "eval_samples", 100, "S of the evaluation timing (0: no evaluation timing).")

_CONFIG_MODULES = {"offline": offline_config, "cub": cub_config}


def _jax_runner(config, loss_fn, arrays, compiler_options=None):
  """(params, compile seconds, run(num_steps) -> seconds per step)."""
  model = segmentation.make_model(config)
  example = segmentation.objective_batch(
      config, jnp.asarray(arrays["image"][:1]), jnp.asarray(arrays["masks"][:1, 0]),
      training=False)
  params = model.init(jax.random.PRNGKey(0), example["target"], example["condition"])
  compile_seconds, run = speed_harness.jax_step_runner(
      config, params, loss_fn(config, model), arrays, compiler_options)
  return params, compile_seconds, run


def _torch_runner(config, threads, arrays):
  """(model, run(num_steps) -> seconds per step) at `threads` torch threads."""
  from benchmarks import pytorch_common  # pylint: disable=g-import-not-at-top
  return pytorch_common.step_runner(pytorch_segmentation.make_train_step, config,
                                    pytorch_segmentation.in_channels(config), threads,
                                    arrays)


def _time_config(name: str, num_steps: int) -> dict:
  config = _CONFIG_MODULES[name].get_config()
  arrays = pytorch_segmentation.random_arrays(config)
  runners, compile_seconds = {}, {}
  for variant in ["jax", *_JAX_VARIANTS.value]:
    loss_fn = segmentation.make_loss_fn
    options = speed_harness.variant_options(variant)
    params, compile_seconds[variant], runners[variant] = _jax_runner(
        config, loss_fn, arrays, options)
  jax_params = sum(x.size for x in jax.tree.leaves(params))
  torch_params = loss_difference = None
  for threads in map(int, _TORCH_THREADS.value):
    from benchmarks import pytorch_common  # pylint: disable=g-import-not-at-top
    model, runners[f"torch_{threads}_threads"] = _torch_runner(config, threads, arrays)
    torch_params = pytorch_common.check_parameter_count(name, model, jax_params)
    # The same starting weights; checks the two models compute the same loss.
    loss_difference = pytorch_segmentation.check_same_model(config, params, model,
                                                            arrays)
    if loss_difference > 1e-4:
      raise AssertionError(f"{name}: per-image losses differ by up to "
                           f"{loss_difference:.2g} (relative)")
  best = speed_harness.interleaved_best(runners, num_steps, _REPEATS.value)
  b = config.batch_size
  evaluation = None
  if _EVAL_SAMPLES.value and _TORCH_THREADS.value:
    evaluation = _time_evaluation(config, model, arrays, _EVAL_SAMPLES.value)
  return {
      "evaluation": evaluation,
      "image_size": config.image_size,
      "channels": pytorch_segmentation.in_channels(config),
      "batch_size": b,
      "parameters": {"jax": jax_params, "torch": torch_params},
      "max_relative_loss_difference_same_weights_and_noise": loss_difference,
      "compile_s": compile_seconds,
      **speed_harness.step_figures(best, b, num_steps, _REPEATS.value),
  }


def _time_evaluation(config, torch_model, arrays, num_samples: int) -> dict:
  """Images/s of the two sampling evaluations of the task for a batch of
  eval.batch_size test images (2 at 128x128, for memory), S = num_samples
  each, JAX (jitted: `sampling.prior_predictive` + `metrics`, and
  `estimators.cvae_log_likelihood`, as the evaluators call them) beside
  PyTorch at 1 and 2 threads (`pytorch_segmentation`, no_grad, the same
  weights; the draws differ):
    * best_of_iou: z ~ p(z | x) -> masks -> best-of-S IoU;
    * importance_sampled_nll: z ~ q(z | x, y) -> -log p(y | x) (Sohn et
      al.'s (c)).
  Also records the largest difference between the two frameworks' mean
  figures over the batch (different draws: Monte-Carlo noise, not 0)."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import pytorch_common  # pylint: disable=g-import-not-at-top
  from cvae_jax import estimators, metrics, sampling  # pylint: disable=g-import-not-at-top
  model = segmentation.make_model(config)
  batch_size = config.eval.batch_size if config.image_size <= 64 else 2
  images, masks = arrays["image"][:batch_size], arrays["masks"][:batch_size]
  batch = segmentation.objective_batch(config, jnp.asarray(images),
                                       jnp.asarray(masks[:, 0]), training=False)
  example = jax.tree.map(lambda x: x[:1], batch)
  params = model.init(jax.random.PRNGKey(0), example["target"], example["condition"])
  size = config.image_size

  @jax.jit
  def jax_best_of(params, rng):
    logits = sampling.prior_predictive(model, params, batch["condition"], rng,
                                       num_samples)[0].logits
    samples = seg_models.full_resolution(logits, size, size) > 0
    truth = jnp.asarray(masks[:, 0] > 0.5)
    return jnp.max(metrics.intersection_over_union(samples, truth[None]), axis=0)

  @jax.jit
  def jax_nll(params, rng):
    return -estimators.cvae_log_likelihood(
        model, params, batch, rng, num_samples,
        rows_per_slice=num_samples * batch_size)

  pytorch_segmentation.load_flax_params(torch_model, params)
  timages = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  tmasks = torch.from_numpy(masks)
  side = size // seg_models.downsampling_factor(config.network.first_stride,
                                                config.network.pools)
  noise = torch.randn(num_samples, batch_size, config.network.latent_channels,
                      side, side)
  rng = jax.random.PRNGKey(2)
  cases = {
      "best_of_iou": (lambda: jax_best_of(params, rng), lambda: (
          pytorch_segmentation.best_of_samples_iou(torch_model, timages, tmasks, noise))),
      "importance_sampled_nll": (lambda: jax_nll(params, rng), lambda: (
          pytorch_segmentation.importance_sampled_nll(torch_model, timages, tmasks,
                                                      noise)))}
  return {"images": batch_size, "samples_per_image": num_samples,
          **pytorch_common.compare_evaluations(
              cases, list(map(int, _TORCH_THREADS.value)), _REPEATS.value, batch_size)}


def _layer_breakdown(repeats: int = 2, batch: int = 8) -> dict:
  """ms of the CUB decoder's 48->48 5x5 conv at 128x128 (stride 1, SAME):
  forward, input gradient, weight gradient; jax NHWC vs torch NCHW."""
  import torch  # pylint: disable=g-import-not-at-top
  c, k, s, p = 48, 5, 128, 2
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, s, s, c), np.float32)
  w = rng.standard_normal((k, k, c, c), np.float32) * 0.05
  ct = rng.standard_normal((batch, s, s, c), np.float32)
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), [(p, p)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  jx, jw, jct = map(jnp.asarray, (x, w, ct))
  jax_fns = {
      "forward": jax.jit(conv),
      "grad_input": jax.jit(lambda x, w: jax.vjp(lambda x: conv(x, w), x)[1](jct)[0]),
      "grad_weight": jax.jit(lambda x, w: jax.vjp(lambda w: conv(x, w), w)[1](jct)[0]),
  }
  tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
  tct = torch.from_numpy(ct).permute(0, 3, 1, 2).contiguous()
  backward = lambda mask: torch.ops.aten.convolution_backward(
      tct, tx, tw, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1, mask)
  torch_fns = {
      "forward": lambda: torch.nn.functional.conv2d(tx, tw, None, 1, p),
      "grad_input": lambda: backward([True, False, False]),
      "grad_weight": lambda: backward([False, True, False]),
  }
  runners = {}
  for op, fn in jax_fns.items():
    for variant in ("jax_ynnpack", "jax_eigen"):
      options = speed_harness.variant_options(variant)
      compiled = fn.lower(jx, jw).compile(options)
      runners[f"{variant} {op}"] = lambda f=compiled: f(jx, jw).block_until_ready()
    runners[f"torch {op}"] = torch_fns[op]
  torch.set_num_threads(int(_TORCH_THREADS.value[0]) if _TORCH_THREADS.value else 2)
  best = {name: float("inf") for name in runners}
  for name, fn in runners.items():
    fn()  # Warm-up / compile.
  for _ in range(repeats):
    for name, fn in runners.items():
      start = time.perf_counter()
      fn()
      best[name] = min(best[name], time.perf_counter() - start)
  return {"layer": f"conv {c}->{c}, {k}x{k}, {s}x{s}, batch {batch}",
          "torch_threads": torch.get_num_threads(),
          "ms": {name: 1e3 * v for name, v in best.items()}}


def main(argv):
  del argv
  if len(_STEPS.value) != len(_CONFIGS.value):
    raise app.UsageError("--steps needs one entry per --configs entry")
  figures = speed_harness.machine_record(
      _JSON.value, bool(_TORCH_THREADS.value or _LAYER_BREAKDOWN.value))
  for name, steps in zip(_CONFIGS.value, map(int, _STEPS.value)):
    info, start = speed_harness.run_info(), time.time()
    result = figures[name] = speed_harness.finished(
        {**info, **_time_config(name, steps)}, start)
    speed_harness.print_result(
        f"{name}: {result['image_size']}x{result['image_size']}x"
        f"{result['channels']}", result)
  if _LAYER_BREAKDOWN.value:
    start = time.time()
    breakdown = figures["layer_breakdown"] = speed_harness.finished(
        {**speed_harness.run_info(), **_layer_breakdown()}, start)
    print(f"\n{breakdown['layer']}\n| op | ms |\n| --- | --- |")
    for op, ms in breakdown["ms"].items():
      print(f"| {op} | {ms:,.1f} |")
  speed_harness.write_json(_JSON.value, figures)

if __name__ == "__main__":
  app.run(main)
