"""What the PyTorch peers share (benchmark only; torch is not a dependency
of cvae_jax): parameter counts, random batches of a config's shapes, step
timing and the scripts' one-line report."""

import importlib
import math
import time

from absl import flags
import numpy as np
import torch


def num_params(module: torch.nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


def random_batch(config, in_channels: int = 1, graders: int = 1, seed: int = 0):
  """Images uniform in [0, 1], binary masks [B, G, H, W]; NCHW."""
  generator = torch.Generator().manual_seed(seed)
  size, batch = config.image_size, config.batch_size
  images = torch.rand(batch, in_channels, size, size, generator=generator)
  masks = (torch.rand(batch, graders, size, size, generator=generator) < 0.3).float()
  return images, masks


def time_steps(step, batch, num_steps: int) -> float:
  """Seconds per step over `num_steps` consecutive steps."""
  start = time.perf_counter()
  for _ in range(num_steps):
    step(*batch)
  return (time.perf_counter() - start) / num_steps


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


def call_runner(fn, threads: int | None = None):
  """run(num_calls) -> seconds per call of fn() (no gradients recorded), at
  `threads` torch threads (None: as they are; for a JAX function)."""
  def run(num_calls):
    if threads is not None:
      torch.set_num_threads(threads)
    with torch.no_grad():
      return time_steps(lambda: np.asarray(fn()), (), num_calls)
  return run


def compare_evaluations(cases: dict, threads: list[int], repeats: int,
                        images: int) -> dict:
  """Times each case's JAX and PyTorch functions in turns (jax, then torch
  at each thread count; best of `repeats` calls after a warm-up):
  `cases` {name: (jax_call, torch_call)}, zero-argument calls returning the
  [images] figures. Returns {name: {"seconds", "images_per_s" by runner,
  "mean_difference": |mean of JAX's figures - mean of PyTorch's|}}."""
  from benchmarks import speed_harness  # pylint: disable=g-import-not-at-top
  results = {}
  for name, (jax_call, torch_call) in cases.items():
    with torch.no_grad():
      gap = abs(float(np.mean(np.asarray(jax_call())))
                - float(torch_call().mean()))
    runners = {"jax": call_runner(jax_call)}
    runners.update({f"torch_{t}_threads": call_runner(torch_call, t) for t in threads})
    best = speed_harness.interleaved_best(runners, 1, repeats)
    results[name] = {"seconds": best, "mean_difference": gap,
                     "images_per_s": {k: images / v for k, v in best.items()}}
    print(f"  evaluation {name}: " + ", ".join(
        f"{k} {v:,.1f} images/s" for k, v in results[name]["images_per_s"].items())
          + f" (means differ by {gap:.3g})", flush=True)
  return results


def step_runner(make_train_step, config, in_channels: int, threads: int,
                arrays: dict, target: str = "masks"):
  """(model, run(num_steps) -> seconds per step) of a port's train step at
  `threads` torch threads on the NHWC `arrays` ("image" and `target`)."""
  model, step = make_train_step(config, in_channels)
  batch = (torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).contiguous(),
           torch.from_numpy(arrays[target]))

  def run(num_steps):
    torch.set_num_threads(threads)
    return time_steps(step, batch, num_steps)
  return model, run


def check_parameter_count(name: str, model: torch.nn.Module, jax_params: int) -> int:
  """The port's parameter count; AssertionError unless it is flax's."""
  count = num_params(model)
  if count != jax_params:
    raise AssertionError(f"{name}: PyTorch model has {count} parameters, flax "
                         f"{jax_params}")
  return count


def report(title: str, config, model, step, batch, steps: int, repeats: int,
           warmup: int) -> None:
  """Times `step` (best of `repeats` after `warmup` steps) and prints it."""
  time_steps(step, batch, warmup)
  seconds = min(time_steps(step, batch, steps) for _ in range(repeats))
  print(f"| {title} | torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {num_params(model):,} parameters |")
  print(f"| train step, batch {config.batch_size} | "
        f"{config.batch_size / seconds:,.1f} images/s ({1e3 * seconds:.2f} ms/step) |")


def adam_step(model: torch.nn.Module, learning_rate: float, loss_of):
  """step(images, masks) -> the loss: forward (`loss_of(images, masks)`, a
  [B] loss per image), backward and an Adam update of the mean."""
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

  def step(images, masks):
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of(images, masks).mean()
    loss.backward()
    optimizer.step()
    return loss
  return step


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


def define_flags(configs: dict[str, str], steps: int) -> None:
  """A port's flags (only when run as a script: the speed scripts import the
  ports): --config (name -> the train/configs module it reads, the first is
  the default), --threads, --steps, --repeats."""
  flags.DEFINE_enum("config", next(iter(configs)), list(configs),
                    " or ".join(f"{name}: train/configs/{module}.py"
                                for name, module in configs.items()))
  flags.DEFINE_integer("threads", 2, "torch.set_num_threads.")
  flags.DEFINE_integer("steps", steps, "Timed steps per repeat.")
  flags.DEFINE_integer("repeats", 3, "Repeats (the best counts).")


def main(title: str, configs: dict[str, str], make_train_step,
         in_channels=lambda name: 1, graders: int = 1, warmup: int = 1) -> None:
  """A port run as a script: times its train step on a random batch of the
  --config's shapes (`configs` as given to define_flags) and prints the
  report."""
  args = flags.FLAGS
  torch.set_num_threads(args.threads)
  config = importlib.import_module(
      f"train.configs.{configs[args.config]}").get_config()
  channels = in_channels(args.config)
  model, step = make_train_step(config, channels)
  report(f"{title} ({args.config})", config, model, step,
         random_batch(config, channels, graders), args.steps, args.repeats, warmup)
