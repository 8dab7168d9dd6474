"""Evaluators that draw pictures into the workdir (no figures)."""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from cvae_jax import distributions, plotting, sampling
from cvae_jax.evaluators.base import Evaluator
from cvae_jax.models.cvae import CVAE

__all__ = ["picture", "make_label_pictures", "make_baseline_and_samples"]


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


def make_baseline_and_samples(model, name: str, filename: str, given: Callable,
                              shown: Callable, num_images: int = 8,
                              num_samples: int = 6) -> Evaluator:
  """A picture of Sohn et al.'s models, [rows, num_images, H, W] in [0, 1]:
  the rows `given(test arrays)` returns (the input, the truth), then the
  baseline net's p(y = 1) and, for a CVAE (whose features hold its
  baseline's, `baseline_from_features`), its p(y = 1) at z = E[z | x] and
  `num_samples` samples z ~ p(z | x). Each prediction is drawn by
  `shown(x, probabilities) -> [num_images, H, W]`.

  Args:
    given: test arrays -> (x [num_images, ...], [rows of [num_images, H, W]]).
  """
  def draw(params, test, rng):
    x, rows = given({k: v[:num_images] for k, v in test.items()})
    x = jnp.asarray(x)
    if not isinstance(model, CVAE):
      rows.append(shown(x, distributions.mean_of(model.apply(params, x))))
    else:
      likelihood, features = sampling.prior_predictive(
          model, params, x, rng, num_samples, with_mean=True)
      baseline = model.apply(params, features, method="baseline_from_features")
      rows.append(shown(x, distributions.mean_of(baseline)))
      rows.extend(shown(x, p) for p in distributions.mean_of(likelihood))
    return np.stack([np.asarray(r) for r in rows])
  return picture(name, draw, filename)
