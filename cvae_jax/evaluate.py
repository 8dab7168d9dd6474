"""Evaluates a finished run again: the named evaluators, on its saved
parameters, with evaluation settings of your choice.

  python -m cvae_jax.evaluate --workdir=DIR [--evals=samples,modes] \
      [--config.eval.num_samples=200 ...]

The run's task and config come from DIR/results.json. `--evals` names the
evaluators (default: the config's `evals`); `--config.<key>=<value>`
overrides an evaluation setting (a key under `eval`, `evals`, one the task
lists as evaluation-only, or a runtime key such as `data_dir`); a key that
changes training is refused in one line. The evaluators' figures replace theirs in results.json (the others
are kept) and the summary line is printed. Exit codes as `cvae_jax.cli`: 2
for a user error, with one line on stderr.
"""

import ast
import importlib
import json
import sys
from pathlib import Path

from cvae_jax import cli
from cvae_jax.errors import UserError

__all__ = ["USAGE", "evaluate", "main"]

USAGE = ("usage: python -m cvae_jax.evaluate --workdir=DIR [--evals=a,b] "
         "[--task=package.module] [--config.<key>=<value> ...]")


def _split_argv(argv: list[str]) -> tuple[dict, dict]:
  """(flags, config overrides) from `--name=value` arguments."""
  flags, overrides = {}, {}
  for arg in argv:
    if not arg.startswith("--") or "=" not in arg:
      raise UserError(f"unexpected argument {arg!r}; {USAGE}")
    name, value = arg[2:].split("=", 1)
    if name.startswith("config."):
      overrides[name[len("config."):]] = value
    elif name in ("workdir", "evals", "task"):
      flags[name] = value
    else:
      raise UserError(f"unknown flag --{name}; {USAGE}")
  if "workdir" not in flags:
    raise UserError(f"--workdir is required; {USAGE}")
  return flags, overrides


def _parse_value(text: str, current):
  """`text` as a Python literal of `current`'s type (a bare word: a string;
  "a,b" for a sequence: its items)."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if isinstance(current, (list, tuple)) and not isinstance(value, (list, tuple)):
    value = [v.strip() for v in str(value).split(",")] if isinstance(
        value, str) else [value]
  if isinstance(current, float) and isinstance(value, int):
    value = float(value)
  if current is not None and not isinstance(value, type(current)) and not (
      isinstance(current, (list, tuple)) and isinstance(value, (list, tuple))):
    raise UserError(f"--config value {text!r} is not a {type(current).__name__}")
  return value


def _apply(config, overrides: dict, evaluation_keys: tuple, source: str) -> None:
  for key, text in overrides.items():
    reason = cli.unknown_key(key, config)
    if reason is not None:
      raise UserError(f"{reason}; the keys are in {source}")
    if not any(key == k or key.startswith(f"{k}.")
               for k in ("eval", "evals", *evaluation_keys)):
      raise UserError(f"--config.{key} changes training, not the evaluation; "
                      "evaluate takes eval.*, evals, the task's evaluation "
                      "settings and runtime keys such as data_dir (train anew "
                      "with the task's command)")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = _parse_value(text, node[leaf])


def evaluate(argv: list[str]) -> dict:
  """Runs the command line `argv` (without the program name); returns the
  updated results."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from cvae_jax import runner  # pylint: disable=g-import-not-at-top
  from cvae_jax.training import results as results_file  # pylint: disable=g-import-not-at-top
  flags, overrides = _split_argv(argv)
  workdir = Path(flags["workdir"]).expanduser().absolute()
  path = workdir / results_file.RESULTS_FILE
  try:
    saved = json.loads(path.read_text())
    config = ml_collections.ConfigDict(saved["config"])
  except (OSError, ValueError, KeyError, TypeError):
    raise UserError(f"{path} is missing or unreadable: {workdir} holds no "
                    "finished run; train it first with the task's command") from None
  module_name = flags.get("task") or (
      f"cvae_jax.tasks.{saved['task']}" if "task" in saved else None)
  if module_name is None:
    raise UserError(f"{path} does not name its task; pass --task=package.module "
                    "(e.g. cvae_jax.tasks.prob_unet)")
  try:
    task = importlib.import_module(module_name).TASK
  except (ImportError, AttributeError):
    raise UserError(f"cannot import the task {module_name!r} (a module with a "
                    "TASK); pass --task=package.module") from None
  _apply(config, overrides, (*task.evaluation_keys, *results_file.RUNTIME_KEYS,
                             *task.runtime_keys), str(path))
  names = flags["evals"].split(",") if flags.get("evals") else None
  return runner.evaluate(task, config, workdir, names)


def main() -> None:
  """`python -m cvae_jax.evaluate`: `evaluate(sys.argv[1:])`, a user error or
  an interrupt as one line and its exit code (2, 130)."""
  try:
    evaluate(sys.argv[1:])
  except UserError as e:
    cli.fail(str(e))
  except KeyboardInterrupt:
    cli.fail("interrupted; results.json was not changed", 130)


if __name__ == "__main__":
  main()
