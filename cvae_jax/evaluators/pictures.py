"""Evaluators that draw pictures into the workdir (no figures)."""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from cvae_jax import plotting, sampling
from cvae_jax.evaluators.base import Evaluator

__all__ = ["picture", "make_label_pictures"]


def picture(name: str, draw: Callable, filename: str,
            save: Callable = plotting.save_image_grid) -> Evaluator:
  """An Evaluator on the "pictures" stream that writes
  `save(draw(params, test arrays, rng), workdir / filename)` and no figure
  (nothing without a workdir).

  Args:
    draw: (params, test arrays, rng) -> what `save` takes, e.g. an image grid
      [rows, columns, H, W] in [0, 1] for `plotting.save_image_grid`.
  """
  def run(params, test, rng, workdir):
    if workdir is not None:
      save(draw(params, test, rng), workdir / filename)
    return {}
  return Evaluator(name, run, stream="pictures")


def make_label_pictures(model, num_classes: int, columns: int,
                        image_shape: tuple[int, int], count: int = 10) -> Evaluator:
  """samples.png, [num_classes rows, columns, H, W]: the mean of p(y | c, z)
  at z ~ p(z | c), row c conditioned on class c; and reconstructions.png,
  [2, count, H, W]: the first `count` test targets {"target" [N, H * W],
  "condition" [N]} (top) and the mean of p(y | c, z) at z ~ q(z | y, c)."""
  generate = jax.jit(functools.partial(sampling.generate, model))
  reconstruct = jax.jit(functools.partial(sampling.reconstruct, model))

  def run(params, test, rng, workdir):
    if workdir is None:
      return {}
    grid_rng, recon_rng = jax.random.split(rng)
    labels = jnp.repeat(jnp.arange(num_classes), columns)
    samples = np.asarray(generate(params, labels, grid_rng))
    plotting.save_image_grid(samples.reshape(num_classes, columns, *image_shape),
                             workdir / "samples.png")
    target, condition = test["target"][:count], test["condition"][:count]
    recon = np.asarray(reconstruct(params, target, condition, recon_rng))
    plotting.save_image_grid(np.stack([target, recon]).reshape(2, count, *image_shape),
                             workdir / "reconstructions.png")
    return {}
  return Evaluator("pictures", run, stream="pictures")
