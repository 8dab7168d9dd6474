"""An evaluator that draws one picture into the workdir."""

from typing import Callable

from cvae_jax import plotting
from cvae_jax.evaluators.base import Evaluator


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
