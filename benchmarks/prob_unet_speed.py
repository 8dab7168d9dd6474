"""Speed of the Probabilistic U-Net's train step, JAX beside the same model in
PyTorch (benchmarks/pytorch_prob_unet.py), in one process.

  pip install torch==2.13.0   # benchmark only; not a dependency of cvae_jax
  python -m benchmarks.prob_unet_speed --json=docs/prob_unet_speed_cpu.json

For Kohl et al.'s LIDC config (train/configs/prob_unet_lidc.py: 128x128 grey,
U-Net channels 32, 64, 128, 192, 3 convs a block, latent 6, 3 fcomb convs,
batch 32) and the offline one (prob_unet.py: 32x32, channels halved), random
images and 4 graders' masks of those shapes: images/s and s/step of one
train step (forward + backward + Adam, one z ~ q, a random grader per
image), steady state:
  * jax: the task's `make_loss_fn` and the config's optax optimiser through
    the trainer's `train_step`, jitted, state donated;
  * jax_ynnpack, jax_eigen (diagnostic, --jax_variants): the same step with
    its convolutions on that library (`backends.library_options`), whatever
    `cpu_convolutions` chooses;
  * torch_<n>_threads: the PyTorch model, torch.set_num_threads(n), started
    from the flax weights; the parameter counts must be equal and the
    per-image losses at the same z noise must agree (both checked; the check
    gives the zero-initialised Gaussian heads random weights first, so that
    q != p and the KL and z paths are exercised).
Variants are interleaved (jax, torch, jax, torch, ...) so that they share the
machine's load; each figure is the best of `--repeats` rounds of `--steps`
steps after a warm-up step (compilation excluded). Prints Markdown tables;
`--json=PATH` also writes the figures, keeping the records of configs not run
this time (so the slow LIDC config can be its own run):

  python -m benchmarks.prob_unet_speed --configs=lidc --steps=2 --repeats=2 \
      --json=docs/prob_unet_speed_cpu.json
  python -m benchmarks.prob_unet_speed --configs=offline --steps=10 \
      --json=docs/prob_unet_speed_cpu.json
"""

import functools
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import speed_harness
from cvae_jax import distributions
from cvae_jax.tasks import prob_unet
from train.configs import prob_unet as offline_config
from train.configs import prob_unet_lidc as lidc_config

_CONFIGS = flags.DEFINE_list("configs", ["lidc", "offline"], "lidc and/or offline.")
_STEPS = flags.DEFINE_list("steps", None,
                           "Timed steps per round, one entry per --configs "
                           "(default: 2 for lidc, 10 for offline).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Rounds; the best one counts.")
_TORCH_THREADS = flags.DEFINE_list("torch_threads", ["1", "2"],
                                   "torch.set_num_threads values; [] skips torch.")
_JAX_VARIANTS = flags.DEFINE_list(
    "jax_variants", [], "Diagnostic variants timed beside the plain jax step: "
    "jax_ynnpack and/or jax_eigen (see the docstring).")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")
_EVAL_SAMPLES = flags.DEFINE_integer(
    "eval_samples", 100, "S of the evaluation timing (0: no evaluation timing).")

_CONFIG_MODULES = {"lidc": lidc_config, "offline": offline_config}
_DEFAULT_STEPS = {"lidc": 2, "offline": 10}
_GRADERS = 4


def _config(name: str):
  config = _CONFIG_MODULES[name].get_config()
  config.model = "prob_unet"
  return config


def random_arrays(config, seed: int = 0) -> dict[str, np.ndarray]:
  """{"image" [B, H, W, 1] uniform, "masks" [B, G, H, W] binary}."""
  rng = np.random.default_rng(seed)
  b, s = config.batch_size, config.image_size
  return {"image": rng.random((b, s, s, 1), np.float32),
          "masks": (rng.random((b, _GRADERS, s, s)) < 0.3).astype(np.float32)}


def init_params(config, model):
  example = prob_unet.objective_batch(jnp.zeros((1, config.image_size,
                                                 config.image_size, 1)),
                                      jnp.zeros((1, config.image_size,
                                                 config.image_size)))
  return model.init(jax.random.PRNGKey(0), example["target"], example["condition"])


def with_random_heads(params, seed: int = 3, scale: float = 0.05):
  """params with the (zero-initialised) prior / posterior heads random."""
  params = jax.tree.map(lambda x: x, params)  # A copy of the dict structure.
  rng = np.random.default_rng(seed)
  for net in ("prior_net", "posterior_net"):
    head = dict(params["params"][net]["head"])
    head["kernel"] = jnp.asarray(
        scale * rng.standard_normal(head["kernel"].shape, np.float32))
    head["bias"] = jnp.asarray(
        scale * rng.standard_normal(head["bias"].shape, np.float32))
    params["params"][net] = {**params["params"][net], "head": head}
  return params


def check_same_model(config, params, torch_model, arrays) -> dict:
  """Largest relative differences between the flax model (its own
  recognition / prior / generation) and the PyTorch model given the flax
  weights: per-image losses at the same z noise (the first grader's mask)
  and the logits. Loads `params` into `torch_model`."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import pytorch_prob_unet  # pylint: disable=g-import-not-at-top
  model = prob_unet.make_model(config)
  pytorch_prob_unet.load_flax_params(torch_model, params)
  batch = prob_unet.objective_batch(jnp.asarray(arrays["image"]),
                                    jnp.asarray(arrays["masks"][:, 0]))

  def per_image(module, condition, target, noise):
    posterior = module.recognition(target, condition)
    z = posterior.mean + jnp.exp(0.5 * posterior.log_variance) * noise
    logits = module.generation(z, condition)
    nll = -distributions.bernoulli_log_likelihood(logits, target)
    kl = distributions.kl_diagonal_gaussians(posterior, module.prior(condition))
    return nll + config.beta * kl, logits

  noise = np.random.default_rng(1).standard_normal(
      (config.batch_size, config.network.latent_size), np.float32)
  jax_loss, jax_logits = map(np.asarray, jax.jit(
      functools.partial(model.apply, method=per_image))(
          params, batch["condition"], batch["target"], jnp.asarray(noise)))
  x = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2)
  y = torch.from_numpy(arrays["masks"][:, :1])
  with torch.no_grad():
    torch_loss = torch_model(x, y, torch.from_numpy(noise)).numpy()
    q_mean, q_log_var = torch_model.posterior_net(torch.cat([x, y], 1))
    z = q_mean + torch.exp(0.5 * q_log_var) * torch.from_numpy(noise)
    torch_logits = torch_model.combine(z, torch_model.unet(x)).numpy()
  torch_logits = torch_logits.reshape(len(torch_logits), -1)
  return {
      "loss": float(np.max(np.abs(jax_loss - torch_loss) / np.abs(jax_loss))),
      "logits": float(np.max(np.abs(jax_logits - torch_logits))
                      / np.max(np.abs(jax_logits))),
  }


def torch_ged(torch_model, images, masks, noise):
  """The PyTorch side of the evaluation timing: [B] GED of S samples z ~
  p(z | x) (noise [S, B, latent]) against the graders' masks [B, G, H, W],
  d = 1 - IoU as `metrics.pairwise_distances` (masks as float matmuls)."""
  import torch  # pylint: disable=g-import-not-at-top
  num_samples, batch = noise.shape[:2]
  features = torch_model.unet(images)
  p_mean, p_log_var = torch_model.prior_net(images)
  z = (p_mean + torch.exp(0.5 * p_log_var) * noise).reshape(num_samples * batch, -1)
  logits = torch_model.combine(z, features.repeat(num_samples, 1, 1, 1))
  samples = (logits > 0).float().reshape(num_samples, batch, -1).transpose(0, 1)
  graders = masks.reshape(batch, masks.shape[1], -1)

  def distances(a, b):
    intersection = a @ b.transpose(1, 2)
    union = a.sum(-1)[:, :, None] + b.sum(-1)[:, None, :] - intersection
    return torch.where(union == 0, 0.0, 1.0 - intersection / union.clamp(min=1.0))
  return (2 * distances(samples, graders).mean((1, 2))
          - distances(samples, samples).mean((1, 2))
          - distances(graders, graders).mean((1, 2)))


def _time_evaluation(config, torch_model, arrays, num_samples: int) -> dict:
  """Images/s of the task's two sampling evaluations for a batch of
  eval.batch_size images (4 above 64x64, for memory), S = num_samples each,
  JAX (jitted, the task's own functions) beside PyTorch at 1 and 2 threads
  (no_grad, the same weights; the draws differ):
    * ged: z ~ p(z | x) -> masks -> GED against the 4 graders
      (`prob_unet.sample_logits`, `metrics.generalized_energy_distance`);
    * importance_sampled_nll: -log p(y_g | x) from q(z | x, y_g), mean over
      the graders (`prob_unet.cvae_negative_log_likelihood`, one chunk).
  Fresh weights: the step timing donated `params`' buffers."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import pytorch_common, pytorch_prob_unet  # pylint: disable=g-import-not-at-top
  from cvae_jax import metrics  # pylint: disable=g-import-not-at-top
  model = prob_unet.make_model(config)
  params = init_params(config, model)
  # S x batch maps of the fcomb's width: ~20 GB at 128x128 with 20 images.
  batch = config.eval.batch_size if config.image_size <= 64 else 4
  images, masks = arrays["image"][:batch], arrays["masks"][:batch]
  jimages, jmasks = jnp.asarray(images), jnp.asarray(masks)

  @jax.jit
  def jax_ged(params, rng):
    logits = prob_unet.sample_logits(config, model, params, jimages, rng, num_samples)
    samples = jnp.moveaxis(logits > 0, 0, 1).reshape(batch, num_samples,
                                                     *masks.shape[-2:])
    return metrics.generalized_energy_distance(samples, jmasks > 0.5).ged

  @jax.jit
  def jax_nll(params, rng):
    return prob_unet.cvae_negative_log_likelihood(model, params, jimages, jmasks,
                                                  rng, num_samples, num_samples)

  pytorch_prob_unet.load_flax_params(torch_model, params)
  timages = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  tmasks = torch.from_numpy(masks)
  noise = torch.randn(num_samples, batch, config.network.latent_size)
  rng = jax.random.PRNGKey(2)
  cases = {
      "ged": (lambda: jax_ged(params, rng),
              lambda: torch_ged(torch_model, timages, tmasks, noise)),
      "importance_sampled_nll": (
          lambda: jax_nll(params, rng),
          lambda: pytorch_prob_unet.importance_sampled_nll(torch_model, timages,
                                                           tmasks, noise))}
  return {"images": batch, "samples_per_image": num_samples,
          **pytorch_common.compare_evaluations(
              cases, list(map(int, _TORCH_THREADS.value)), _REPEATS.value, batch)}


def _jax_runner(config, arrays, compiler_options=None):
  """(params, compile seconds, run(num_steps) -> seconds per step)."""
  model = prob_unet.make_model(config)
  params = init_params(config, model)
  compile_seconds, run = speed_harness.jax_step_runner(
      config, params, prob_unet.make_loss_fn(config, model), arrays, compiler_options)
  return params, compile_seconds, run


def _torch_runner(config, threads, arrays):
  """(model, run(num_steps) -> seconds per step) at `threads` torch threads."""
  from benchmarks import pytorch_common, pytorch_prob_unet  # pylint: disable=g-import-not-at-top
  return pytorch_common.step_runner(pytorch_prob_unet.make_train_step, config, 1,
                                    threads, arrays)


def _time_config(name: str, num_steps: int) -> dict:
  config = _config(name)
  arrays = random_arrays(config)
  runners, compile_seconds = {}, {}
  for variant in ["jax", *_JAX_VARIANTS.value]:
    options = speed_harness.variant_options(variant)
    params, compile_seconds[variant], runners[variant] = _jax_runner(
        config, arrays, options)
    print(f"  compiled {variant} in {compile_seconds[variant]:.1f} s", flush=True)
  jax_params = sum(x.size for x in jax.tree.leaves(params))
  torch_params = difference = None
  torch_runners = {}
  for threads in map(int, _TORCH_THREADS.value):
    from benchmarks import pytorch_common, pytorch_prob_unet  # pylint: disable=g-import-not-at-top
    model, torch_runners[f"torch_{threads}_threads"] = _torch_runner(
        config, threads, arrays)
    torch_params = pytorch_common.check_parameter_count(name, model, jax_params)
    if difference is None:  # Same weights -> same function (checked once).
      difference = check_same_model(config, with_random_heads(params), model,
                                    arrays)
      print(f"  same weights and noise: per-image losses differ by "
            f"{difference['loss']:.2g}, logits by {difference['logits']:.2g} "
            "(relative)", flush=True)
      if difference["loss"] > 1e-4 or difference["logits"] > 1e-4:
        raise AssertionError(f"{name}: flax and PyTorch differ: {difference}")
    # Every torch runner starts from the flax weights.
    pytorch_prob_unet.load_flax_params(model, params)
  runners.update(torch_runners)
  best = speed_harness.interleaved_best(runners, num_steps, _REPEATS.value)
  b = config.batch_size
  evaluation = None
  if _EVAL_SAMPLES.value and torch_runners:
    evaluation = _time_evaluation(config, model, arrays, _EVAL_SAMPLES.value)
  return {
      "evaluation": evaluation,
      "image_size": config.image_size, "channels": tuple(config.network.channels),
      "batch_size": b, "graders": _GRADERS,
      "parameters": {"jax": jax_params, "torch": torch_params},
      "max_relative_difference_same_weights_and_noise": difference,
      "compile_s": compile_seconds,
      **speed_harness.step_figures(best, b, num_steps, _REPEATS.value),
  }


def main(argv):
  del argv
  steps = _STEPS.value or [str(_DEFAULT_STEPS[c]) for c in _CONFIGS.value]
  if len(steps) != len(_CONFIGS.value):
    raise app.UsageError("--steps needs one entry per --configs entry")
  figures = speed_harness.machine_record(_JSON.value, bool(_TORCH_THREADS.value))
  for name, num_steps in zip(_CONFIGS.value, map(int, steps)):
    info = speed_harness.run_info()
    print(f"{name}...", flush=True)
    start = time.time()
    result = figures[name] = speed_harness.finished(
        {**info, **_time_config(name, num_steps)}, start)
    size = result["image_size"]
    speed_harness.print_result(
        f"{name}: {size}x{size}x1, U-Net channels {result['channels']}", result,
        images_digits=2)
    speed_harness.write_json(_JSON.value, figures)  # A later config may be interrupted.

if __name__ == "__main__":
  app.run(main)
