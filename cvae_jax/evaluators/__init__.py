"""Evaluators: small modules, each computing one group of test figures,
named in a config's `evals` list (as big_vision names its evaluators).

The library's own (`LIBRARY`) serve every task whose model is a
`cvae_jax.models.cvae.CVAE`; a task adds its own (pictures, task metrics)
under further names. `build` turns the names into the evaluators to run.
"""

import dataclasses
from typing import Callable, Mapping, Sequence

from cvae_jax.errors import ConfigError
from cvae_jax.evaluators import likelihood
from cvae_jax.evaluators.pictures import picture
from cvae_jax.evaluators.base import (CVAE, DETERMINISTIC, GSNN, KINDS, Context,
                                      Evaluator, measured)

# name -> (Context -> Evaluator, or None where it does not apply to the model).
LIBRARY: dict[str, Callable[[Context], Evaluator | None]] = {
    "exact": likelihood.make_exact,
    "prior_mean": likelihood.make_prior_mean,
    "prior_monte_carlo": likelihood.make_prior_monte_carlo,
    "importance_sampled": likelihood.make_importance_sampled,
    "importance_sampled_large": likelihood.make_importance_sampled_large,
    "negative_elbo": likelihood.make_negative_elbo,
}


def build(names: Sequence[str], defaults: Sequence[str], ctx: Context,
          own: Mapping[str, Evaluator | None]) -> list[Evaluator]:
  """The evaluators `names` asks for, in that order, that apply to the model.

  Args:
    names: the config's `evals`.
    defaults: the task's default `evals`. An evaluator's test-stream key is
      its position among the default ones that apply to the model (so leaving
      one out of `names` changes no other's figures); evaluators outside the
      defaults come after them, in the order of `names`.
    ctx: what the library evaluators need to know of the task.
    own: the task's own evaluators by name (None where one does not apply).

  Raises:
    ConfigError: a name that is neither the task's nor the library's.
  """
  unknown = [n for n in names if n not in own and n not in LIBRARY]
  if unknown:
    raise ConfigError(
        f"evals: unknown evaluator(s) {', '.join(map(repr, unknown))}; this "
        f"task has {', '.join(sorted({*own, *LIBRARY}))}; set --config.evals")
  made = {name: own[name] if name in own else LIBRARY[name](ctx)
          for name in dict.fromkeys([*defaults, *names])}
  order = [n for n, e in made.items() if e is not None and e.stream == "test"]
  return [dataclasses.replace(made[n], index=order.index(n))
          if made[n].stream == "test" else made[n]
          for n in names if made[n] is not None]


__all__ = ["CVAE", "DETERMINISTIC", "GSNN", "KINDS", "LIBRARY", "Context",
           "Evaluator", "build", "measured", "picture"]
