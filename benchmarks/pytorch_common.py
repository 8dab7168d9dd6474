"""What the PyTorch peers share (benchmark only; torch is not a dependency
of cvae_jax): parameter counts, random batches of a config's shapes, step
timing and the scripts' one-line report."""

import time

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


def report(title: str, config, model, step, batch, steps: int, repeats: int,
           warmup: int) -> None:
  """Times `step` (best of `repeats` after `warmup` steps) and prints it."""
  time_steps(step, batch, warmup)
  seconds = min(time_steps(step, batch, steps) for _ in range(repeats))
  print(f"| {title} | torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {num_params(model):,} parameters |")
  print(f"| train step, batch {config.batch_size} | "
        f"{config.batch_size / seconds:,.1f} images/s ({1e3 * seconds:.2f} ms/step) |")
