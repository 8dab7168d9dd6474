"""Evaluators: small modules, each computing one group of test figures,
named in a config's `evals` list (as big_vision names its evaluators).

By domain: `likelihood` (estimates of -log p(y | x) for any CVAE, from a
`Context`), `ambiguity` (samples of an ambiguous segmentation against its
graders, for any model's `cvae_jax.predictors.Predictor`), `segmentation`,
`boxes` and `pictures`. A task builds the ones that apply to its model into
{name: Evaluator} (`library(ctx)` gives the likelihood ones); `build` picks
those a config's `evals` names.
"""

import dataclasses
import functools
from typing import Callable, Mapping, Sequence

from cvae_jax.errors import ConfigError
from cvae_jax.evaluators import likelihood
from cvae_jax.evaluators.pictures import picture
from cvae_jax.evaluators.base import (CVAE, DETERMINISTIC, GSNN, KIND_OF_OBJECTIVE,
                                      KINDS, Context, Evaluator, measured)

# name -> (Context -> Evaluator, or None where it does not apply to the model).
LIBRARY: dict[str, Callable[[Context], Evaluator | None]] = {
    "exact": likelihood.make_exact,
    "prior_mean": likelihood.make_prior_mean,
    "prior_monte_carlo": likelihood.make_prior_monte_carlo,
    "importance_sampled": likelihood.make_importance_sampled,
    "importance_sampled_large": likelihood.make_importance_sampled_large,
    "negative_elbo": likelihood.make_negative_elbo,
}


def library(ctx: Context) -> dict:
  """{name: () -> the likelihood evaluator, or None where it does not apply}:
  each is built when named (it may need settings only its config has)."""
  return {name: functools.partial(make, ctx) for name, make in LIBRARY.items()}


def build(names: Sequence[str], defaults: Sequence[str],
          available: Mapping[str, Evaluator | None]) -> list[Evaluator]:
  """The evaluators `names` asks for, in that order, that apply to the model.

  Args:
    names: the config's `evals`.
    defaults: the task's default `evals`. An evaluator's test-stream key is
      its position among the default ones that apply to the model (so leaving
      one out of `names` changes no other's figures); evaluators outside the
      defaults come after them, in the order of `names`.
    available: the task's evaluators by name: an Evaluator, None where one
      does not apply, or a callable that returns either (built only when
      `names` or `defaults` name it).

  Raises:
    ConfigError: a name the task does not have.
  """
  unknown = [n for n in names if n not in available]
  if unknown:
    raise ConfigError(
        f"evals: unknown evaluator(s) {', '.join(map(repr, unknown))}; this "
        f"task has {', '.join(sorted(available))}; set --config.evals")
  made = {}
  for name in dict.fromkeys([*defaults, *names]):
    if name in available:
      made[name] = available[name]
      if callable(made[name]) and not isinstance(made[name], Evaluator):
        made[name] = made[name]()
  order = [n for n, e in made.items() if e is not None and e.stream == "test"]
  return [dataclasses.replace(made[n], index=order.index(n))
          if made[n].stream == "test" else made[n]
          for n in names if made[n] is not None]


__all__ = ["CVAE", "DETERMINISTIC", "GSNN", "KIND_OF_OBJECTIVE", "KINDS", "LIBRARY",
           "Context", "Evaluator", "build", "evaluate_cvae", "library", "measured",
           "picture", "ambiguity", "base", "boxes", "likelihood", "pictures",
           "segmentation"]


def evaluate_cvae(model, params, data: dict, rng, num_samples: int = 100,
                  elbo_samples: int = 1, batch_size: int = 256,
                  evals: Sequence[str] = ("prior_mean", "prior_monte_carlo",
                                          "importance_sampled", "negative_elbo"),
                  chunk_size: int | None = None) -> dict[str, float]:
  """The library's estimates of -log p(y | x) for any CVAE and test set, in
  nats per example (mean over the examples), without a task or a config.

  Args:
    model, params: a `cvae_jax.models.cvae.CVAE` and its variables.
    data: {"condition": [N, ...], "target": [N, ...], ...} arrays.
    rng: the noise of every estimate (one key per evaluator, by position).
    num_samples: S of the prior Monte Carlo and the importance-sampled NLL.
    elbo_samples: z ~ q per example of the negative ELBO.
    evals: which of `LIBRARY`'s evaluators run.

  Returns:
    {evaluator name: nats per example}.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict({"eval": dict(
      batch_size=batch_size, num_samples=num_samples, elbo_samples=elbo_samples,
      chunk_size=chunk_size or num_samples)})
  ctx = Context(config, model, CVAE, noun="examples")
  unknown = [n for n in evals if n not in LIBRARY]
  if unknown:
    raise ConfigError(f"unknown evaluator(s) {unknown}; the library's are "
                      f"{', '.join(LIBRARY)}")
  figures = {}
  for i, name in enumerate(evals):
    evaluator = LIBRARY[name](ctx)
    if evaluator is None:
      continue
    for figure, values in evaluator.run(params, data, jax.random.fold_in(rng, i),
                                        None).items():
      figures[figure] = float(np.mean(values))
  return figures
