"""What an evaluator is, and what a library evaluator knows of its task.

An `Evaluator` computes one group of test figures from the trained
parameters. Library evaluators (`cvae_jax.evaluators.likelihood`, ...) are
built from a `Context`, which says how a task's test arrays become the
{"condition", "target"} batch of its model, which of its nets are trained and
where in its config each setting lives; a task's own evaluators (its
pictures, its metrics) are built by the task. A config's `evals` names which
of them run (`cvae_jax.evaluators.build`).
"""

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections

from cvae_jax import evaluation
from cvae_jax.errors import ConfigError

__all__ = ["DETERMINISTIC", "GSNN", "CVAE", "KINDS", "KIND_OF_OBJECTIVE", "Evaluator", "Context", "measured"]

# Which networks of a model are trained, and so which estimates mean something.
DETERMINISTIC, GSNN, CVAE = "deterministic", "gsnn", "cvae"
KINDS = (DETERMINISTIC, GSNN, CVAE)
# The nets each objective of `objectives.OBJECTIVES` trains.
KIND_OF_OBJECTIVE = {"baseline": DETERMINISTIC, "gsnn": GSNN, "cvae": CVAE,
                     "hybrid": CVAE}


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """One group of test figures.

  name: what it computes (its key in results.json's "eval_seconds" and
    "figures_by_evaluator", and in a config's `evals`).
  run: (params, test arrays, rng, workdir or None) -> {figure: per-example
    values [N] or a float}; per-example values are averaged by the runner.
    It may also write files into the workdir (pictures; none without one).
  stream: the named RNG stream it draws from ("test" or "pictures").
  index: set by `evaluators.build`: which key of the test stream it gets.
  estimators: figure -> how it was estimated (e.g. "importance-sampled from
    q(z|x,y), S=100"), written to results.json beside the figures.
  """
  name: str
  run: Callable[[Any, dict, jax.Array, Path | None], dict]
  stream: str = "test"
  index: int = 0
  estimators: dict = dataclasses.field(default_factory=dict)


def _identity(arrays: dict) -> dict:
  return arrays


@dataclasses.dataclass(frozen=True)
class Context:
  """What a library evaluator needs to know of the task it evaluates.

  kind: DETERMINISTIC (no latent: only an exact likelihood), GSNN (prior and
    generation nets trained, the recognition net not) or CVAE (all three).
  arrays: test split -> the arrays evaluated (e.g. the first grader's masks).
  batch: those arrays, one batch of them -> the model's {"condition",
    "target", ...} batch; runs inside jit.
  noun: what a test example is called in progress lines ("images").
  names: library figure name -> the task's name for it in results.json.
  settings: setting ("batch_size", "num_samples", ...) -> its dotted config
    key; a setting not named here is "eval.<setting>".
  """
  config: ml_collections.ConfigDict
  model: Any
  kind: str
  arrays: Callable[[dict], dict] = _identity
  batch: Callable[[dict], dict] = _identity
  noun: str = "images"
  names: dict = dataclasses.field(default_factory=dict)
  settings: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

  def key(self, setting: str) -> str:
    """The dotted config key of a setting."""
    return self.settings.get(setting, f"eval.{setting}")

  def get(self, setting: str, default=None):
    """The value of a setting in the config (default if it has none)."""
    node = self.config
    for part in self.key(setting).split("."):
      if part not in node:
        return default
      node = node[part]
    return node

  def require(self, setting: str, evaluator: str):
    """The value of a setting an evaluator cannot run without; ConfigError
    naming the key when the config has none."""
    value = self.get(setting)
    if value is None:
      raise ConfigError(f"evaluator {evaluator!r} reads {self.key(setting)}, which "
                        "this config does not have; add it to the config file "
                        "or leave the evaluator out of evals")
    return value

  def figure(self, name: str) -> str:
    return self.names.get(name, name)


def measured(label: str, noun: str, fn, params, arrays: dict, rng: jax.Array,
             batch_size: int, as_dict: bool = False):
  """Announces `label` with the number of `arrays`' examples, then maps a
  per-example fn over them, data-parallel (with a progress bar on a
  terminal); what every evaluator's body does."""
  label = f"{label}, {len(next(iter(arrays.values()))):,} test {noun}"
  print(f"{label}...", flush=True)
  mapper = evaluation.map_dict_over_batches if as_dict else evaluation.map_over_batches
  return mapper(fn, params, arrays, rng, batch_size, description=label)
