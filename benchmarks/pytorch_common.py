"""What the PyTorch peers share (torch is a benchmark-only package): a
`Peer`, the check that model and port compute the same function, their
timing side by side in one process (`time_peer`) and the speed scripts'
command line (`speed_main`). A port's model takes NCHW images; its
`forward(images, target, noise)` returns the per-example loss at z = mean +
std * noise, noise in flax's layout of the latent; its
`make_train_step(config, in_channels)` returns (model, step(images, target)
-> loss): forward, backward and Adam.
"""

import dataclasses
import functools
import math
import time
from typing import Any, Callable

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import fake_data, harness, speed_harness
from cvae_jax import objectives
from cvae_jax.models import cvae


@dataclasses.dataclass(frozen=True)
class Peer:
  """A library model and its PyTorch port: what a speed script times. task:
  its cvae_jax.tasks module; configs: {name: () -> config}, the first the
  default; steps: {config name: default timed steps per round}; evaluations:
  {name: (jax_fn(config, model, params, arrays, rng, num_samples),
  torch_fn(torch model, images, target, noise [S, images,
  *latent_shape(config)]))}, each returning [images] figures;
  large_eval_images: the images evaluated at once above 64x64."""
  title: str
  task: Any
  configs: dict[str, Callable]
  steps: dict[str, int]
  make_train_step: Callable
  load_flax_params: Callable
  evaluations: dict[str, tuple[Callable, Callable]] = dataclasses.field(
      default_factory=dict)
  latent_shape: Callable | None = None
  large_eval_images: int = 0


def num_params(module: torch.nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


def torch_batch(arrays: dict) -> tuple[torch.Tensor, torch.Tensor]:
  """(images NCHW, target) of fake_data arrays: every grader's masks
  [B, G, H, W], or the query box [B, 4] (the first)."""
  target = arrays["masks"] if "masks" in arrays else arrays["boxes"][:, 0]
  return (torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).contiguous(),
          torch.from_numpy(np.ascontiguousarray(target)))


def runner(fn, threads: int | None = None):
  """run(n) -> seconds per call of fn() over n calls at `threads` torch threads."""
  def run(num_calls):
    if threads is not None:
      torch.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(num_calls):
      fn()
    return (time.perf_counter() - start) / num_calls
  return run


def adam_step(model: torch.nn.Module, learning_rate: float, loss_of):
  """step(images, target) -> the loss: forward (`loss_of(images, target)`,
  [B] per example), backward and an Adam update of the mean."""
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

  def step(images, target):
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of(images, target).mean()
    loss.backward()
    optimizer.step()
    return loss
  return step


def gaussian_kl(q_mean, q_log_var, p_mean, p_log_var, axes):
  """KL(q || p) of diagonal Gaussians, summed over `axes`."""
  return 0.5 * (p_log_var - q_log_var - 1 + (
      torch.exp(q_log_var) + (q_mean - p_mean) ** 2) / torch.exp(p_log_var)).sum(axes)


def importance_sampled_nll(log_likelihood, z, prior, posterior):
  """[B] nats: -log (1/S) sum_s p(y | z_s) p(z_s) / q(z_s) from log p(y | z_s)
  [S, B] at z [S, B, ...] drawn from q; `prior` and `posterior` are (mean,
  log variance) pairs broadcasting against z, whose densities are summed over
  z's axes after the second (as `cvae_jax.estimators`)."""
  event = tuple(range(2, z.ndim))

  def log_density(mean, log_var):
    return (-0.5 * (log_var + (z - mean) ** 2 / torch.exp(log_var)
                    + math.log(2 * math.pi))).sum(event)
  log_weights = log_likelihood + log_density(*prior) - log_density(*posterior)
  return -(torch.logsumexp(log_weights, 0) - math.log(z.shape[0]))


def copy_flax_layers(model: torch.nn.Module, layers) -> None:
  """Copies each flax layer's {"kernel", "bias"} into its torch layer
  (`layers`: (torch layer, flax leaf) pairs; conv kernels HWIO -> OIHW,
  dense kernels transposed); ValueError on a shape mismatch or when the
  pairs do not cover every parameter of `model`."""
  copied = 0
  with torch.no_grad():
    for layer, leaf in layers:
      kernel = torch.as_tensor(np.array(leaf["kernel"]))
      kernel = kernel.permute(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
      if kernel.shape != layer.weight.shape:
        raise ValueError(f"kernel {tuple(kernel.shape)} != {tuple(layer.weight.shape)}")
      layer.weight.copy_(kernel)
      layer.bias.copy_(torch.as_tensor(np.array(leaf["bias"])))
      copied += kernel.numel() + layer.bias.numel()
  if copied != num_params(model):
    raise ValueError(f"copied {copied} of {num_params(model)} parameters")


def randomized(params, scale: float = 0.05, seed: int = 3):
  """`params` with every all-zero leaf (biases, zero-initialised heads) drawn
  from N(0, scale^2): so that a check sees q != p and copied biases."""
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(tree, [
      jnp.asarray(scale * rng.standard_normal(x.shape, np.float32))
      if not np.any(np.asarray(x)) else x for x in leaves])


def loss_difference(peer: Peer, config, params, torch_model, arrays: dict) -> float:
  """The largest relative difference between the per-example losses of the
  flax model (one `cvae.forward`: the negative ELBO at config.beta, default
  1, plus the baseline's -log p(y | x) where there is one) and of
  `torch_model` at the same weights and the same noise, on the task's init
  batch of `arrays`."""
  model = peer.task.make_model(config)
  batch = fake_data.init_batch(peer.task, config, arrays)
  peer.load_flax_params(torch_model, params)
  rng = jax.random.PRNGKey(1)
  outputs = jax.jit(functools.partial(cvae.forward, model))(params, batch, rng)
  jax_loss = objectives.negative_elbo_from_outputs(
      outputs, batch, config.get("beta", 1.0)).loss
  if outputs.baseline is not None:
    jax_loss += objectives.baseline_negative_log_likelihood_from_outputs(outputs, batch)
  # The forward's posterior noise (`distributions.sample_gaussian` with rng).
  noise = np.array(jax.random.normal(rng, outputs.posterior.mean.shape))
  images, target = torch_batch(arrays)
  with torch.no_grad():
    torch_loss = torch_model(images, target[:, :1] if target.ndim == 4 else target,
                             torch.from_numpy(noise)).numpy()
  jax_loss = np.asarray(jax_loss)
  return float(np.max(np.abs(jax_loss - torch_loss) / np.abs(jax_loss)))


def time_peer(peer: Peer, name: str, num_steps: int, repeats: int,
              variants: list[str], threads: list[int], eval_samples: int) -> dict:
  """Config `name` of `peer` on fake_data arrays, steady state, in turns
  (best of `repeats` rounds of `num_steps` steps): "jax", the trainer's
  `train_step` (and each of `variants`); "torch_<n>_threads" for each n of
  `threads`, once parameter counts and losses at the same (`randomized`)
  weights and noise are checked equal; then the evaluations (S =
  `eval_samples`)."""
  config = peer.configs[name]()
  arrays = fake_data.training_arrays(peer.task, config)
  model, init_fn, loss_fn = fake_data.step_pieces(peer.task, config, arrays)
  params = init_fn(jax.random.PRNGKey(0))
  runners, compile_seconds = {}, {}
  for variant in ["jax", *variants]:
    compile_seconds[variant], runners[variant] = speed_harness.jax_step_runner(
        config, params, loss_fn, arrays, variant)
    print(f"  compiled {variant} in {compile_seconds[variant]:.1f} s", flush=True)
  jax_params = sum(x.size for x in jax.tree.leaves(params))
  torch_params = difference = torch_model = None
  for t in threads:
    torch_model, step = peer.make_train_step(config, arrays["image"].shape[-1])
    runners[f"torch_{t}_threads"] = runner(
        functools.partial(step, *torch_batch(arrays)), t)
    if (torch_params := num_params(torch_model)) != jax_params:
      raise AssertionError(f"{name}: PyTorch has {torch_params} parameters, flax {jax_params}")
    if difference is None:  # Same weights -> same function (checked once).
      difference = loss_difference(peer, config, randomized(params), torch_model,
                                   arrays)
      print(f"  same weights and noise: per-example losses differ by "
            f"{difference:.2g} (relative)", flush=True)
      if difference > 1e-4:
        raise AssertionError(f"{name}: flax and PyTorch differ by {difference}")
    peer.load_flax_params(torch_model, params)
  best = speed_harness.interleaved_best(runners, num_steps, repeats)
  evaluation = None
  if eval_samples and threads and peer.evaluations:
    images = (config.eval.batch_size if config.image_size <= 64
              else peer.large_eval_images)
    test = {k: v[:images] for k, v in arrays.items()}
    peer.load_flax_params(torch_model, params)
    torch_args = (*torch_batch(test), torch.randn(eval_samples, images,
                                                  *peer.latent_shape(config)))
    evaluation = {"images": images, "samples_per_image": eval_samples}
    for case, (jax_fn, torch_fn) in peer.evaluations.items():  # [images] figures.
      jax_call = functools.partial(jax.jit(functools.partial(
          jax_fn, config, model, arrays=test, num_samples=eval_samples)),
                                   params, rng=jax.random.PRNGKey(2))
      torch_call = functools.partial(torch_fn, torch_model, *torch_args)
      with torch.no_grad():
        gap = abs(float(np.mean(np.asarray(jax_call()))) - float(torch_call().mean()))
      runners = {"jax": runner(lambda: np.asarray(jax_call())), **{
          f"torch_{t}_threads": runner(torch.no_grad()(torch_call), t) for t in threads}}
      seconds = speed_harness.interleaved_best(runners, 1, repeats)
      evaluation[case] = {"seconds": seconds, "mean_difference": gap,
                          "images_per_s": {k: images / v for k, v in seconds.items()}}
      print(f"  evaluation {case}: " + ", ".join(
          f"{k} {v:,.1f} images/s" for k, v in evaluation[case]["images_per_s"].items())
            + f" (means differ by {gap:.3g})", flush=True)
  return {"evaluation": evaluation, "image_size": config.image_size,
          "channels": arrays["image"].shape[-1], "batch_size": config.batch_size,
          "parameters": {"jax": jax_params, "torch": torch_params},
          "max_relative_loss_difference_same_weights_and_noise": difference,
          "compile_s": compile_seconds, "timed_steps_per_round": num_steps,
          "rounds": repeats, "ms_per_step": {k: 1e3 * v for k, v in best.items()},
          "images_per_s": {k: config.batch_size / v for k, v in best.items()},
          "time_relative_to_jax": {k: v / best["jax"] for k, v in best.items()
                                   if k != "jax"}}


def speed_main(peer: Peer) -> None:
  """A speed script's command line: `time_peer` for each --configs entry;
  --json also writes the figures, keeping those of configs not run now."""
  configs = harness.define_list("configs", list(peer.configs), "Configs to time.",
                                peer.configs)
  steps = harness.define_list(
      "steps", None, "Timed steps per round, one per --configs entry (default: "
      + ", ".join(f"{k} {v}" for k, v in peer.steps.items()) + ").")
  repeats = flags.DEFINE_integer("repeats", 3, "Rounds; the best one counts.")
  threads = harness.define_list("torch_threads", ["1", "2"],
                                "torch.set_num_threads values; empty: no PyTorch.")
  variants = harness.define_list(
      "jax_variants", [], "Diagnostic variants timed beside the plain jax step "
      "(the step with its convolutions on that library).", speed_harness.VARIANTS[1:])
  eval_samples = flags.DEFINE_integer(
      "eval_samples", 100, "S of the evaluation timing (0: no evaluation timing).")
  json_path = flags.DEFINE_string("json", None, "Also write the figures here.")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments {argv[1:]}")
    counts = steps.value or [peer.steps[c] for c in configs.value]
    if len(counts) != len(configs.value):
      raise SystemExit("error: --steps needs one entry per --configs entry")
    torch_threads = list(map(int, threads.value))
    figures = speed_harness.machine_record(json_path.value)
    for name, num_steps in zip(configs.value, map(int, counts)):
      print(f"{name}...", flush=True)
      info = speed_harness.run_info()
      result = figures[name] = speed_harness.finished({**info, **time_peer(
          peer, name, num_steps, repeats.value, variants.value, torch_threads,
          eval_samples.value)})
      size, load = result["image_size"], result["load_average_before"][0]
      print(f"\n{peer.title}, {name}: {size}x{size}x{result['channels']}, batch "
            f"{result['batch_size']}, {result['parameters']['jax']:,} parameters; "
            f"load average (1 min) {load:.1f} -> {result['load_average_after'][0]:.1f}",
            *(f"  {k}: {result['images_per_s'][k]:,.2f} images/s, {ms:,.1f} ms/step, "
              f"{result['time_relative_to_jax'].get(k, 1.0):.2f}x jax's time"
              for k, ms in result["ms_per_step"].items()), sep="\n")
      speed_harness.write_json(json_path.value, figures)  # A later one may fail.
  harness.run(main)
