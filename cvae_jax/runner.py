"""One runner for every task: a task is a small spec (`Task`), the runner
owns the rest.

A task supplies what is its own: its config checks, its models, its data
splits, how a batch for `init` is made from the arrays, its training and
per-epoch losses, the settings its checkpoints depend on, and its own test
evaluators; the library's evaluators (`cvae_jax.evaluators`) serve every task,
and the config's `evals` names which run. The runner does, for every task,
in this order:

  1. validate the config, its `evals` and the workdir (before any data is
     touched);
  2. the finished-run check: a workdir whose results.json has this config
     prints its figures and returns; when only evaluation settings changed,
     only the evaluators that read a changed key run again;
  3. load the splits, build the model, train (or resume), with early
     stopping on the validation loss when the config asks for it;
  4. run the evaluators on the first `eval.num_images` test examples;
  5. write results.json and print the summary line.

Every random stream of a run is named here (`RNG_STREAMS`), derived from
`config.seed`: the trainer's own, and `fold_in(PRNGKey(seed), n)` for the
per-epoch evaluation (1: the validation loss, or the label task's test
loss), the test evaluators (2: split into `Task.test_streams` keys, one per
evaluator index) and the pictures (3).
"""

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cvae_jax import evaluation, evaluators, model_check
from cvae_jax.evaluators import Evaluator
from cvae_jax.training import InMemoryData, hooks, trainer
from cvae_jax.training import results as results_file

RNG_STREAMS = {"validation": 1, "test": 2, "pictures": 3}


def rng_stream(config: ml_collections.ConfigDict, name: str) -> jax.Array:
  """The key of the named stream of a run (see the module docstring)."""
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), RNG_STREAMS[name])


@dataclasses.dataclass(frozen=True)
class Task:
  """What a task is made of; see the module docstring.

  Callables take the config first. `validate(config, workdir)` raises a
  ConfigError / UserError for settings that cannot work and loads no data
  (it ends with `trainer.validate_trainer_config`). `make_init_batch(config,
  test arrays of one example)` returns the {"condition", "target"} batch
  `init` sees; deterministic models (`is_cvae(config)` False) are
  initialised on the condition alone. `header(config, test arrays)` gives
  results.json's leading fields and `units` its "units" entry; `unit` is the
  loss's unit in log lines ("nats/image"); `example_noun` names a test
  example in messages.

  Evaluation: `context(config, model)` tells the library's evaluators
  (`cvae_jax.evaluators`) about the task; `own_evaluators(config, model)`
  are the task's own by name (None where one does not apply); `evals` is the
  default of the config's `evals` (the evaluators run, in order), and fixes
  each evaluator's test-stream key (see `evaluators.build`).
  """
  name: str
  validate: Callable[[ml_collections.ConfigDict, Path], None]
  make_model: Callable[[ml_collections.ConfigDict], Any]
  is_cvae: Callable[[ml_collections.ConfigDict], bool]
  load_splits: Callable[[ml_collections.ConfigDict], dict]
  make_init_batch: Callable[[ml_collections.ConfigDict, dict], dict]
  make_loss_fn: Callable[[ml_collections.ConfigDict, Any], Callable]
  run_identity: Callable[[ml_collections.ConfigDict], dict | None]
  context: Callable[[ml_collections.ConfigDict, Any], evaluators.Context]
  own_evaluators: Callable[[ml_collections.ConfigDict, Any], dict]
  evals: tuple[str, ...]
  header: Callable[[ml_collections.ConfigDict, dict], dict]
  units: dict
  unit: str = "nats/image"
  example_noun: str = "images"  # A test example in messages.
  test_streams: int = 1
  # (config, model) -> per-example loss on the validation split (early
  # stopping); or `epoch_evaluation(config, model, splits, rng)` -> the
  # trainer's (state, epoch) -> metrics hook, for a task with its own.
  validation_loss_fn: Callable[[ml_collections.ConfigDict, Any], Callable] | None = None
  epoch_evaluation: Callable[..., Callable] | None = None
  # (config, splits) -> the trainer's data; None: InMemoryData of the train
  # split's `training_keys` (None: all its arrays).
  training_data: Callable[[ml_collections.ConfigDict, dict], Any] | None = None
  training_keys: tuple[str, ...] | None = None
  # (config, workdir, splits) -> params to put over the initial ones (a
  # pre-trained sub-network, e.g. {"params": {"baseline": ...}}), or None.
  pretrained: Callable[[ml_collections.ConfigDict, Path, dict], dict | None] | None = None
  # The trainer's log lines; None: "epoch E [n/N] loss L unit".
  report: Callable[[trainer.Progress, dict], str] | None = None
  report_eval: Callable[[int, dict], str] | None = None
  # Config keys beyond "eval" and "evals" that change the evaluation only,
  # and keys that change nothing (beyond results.RUNTIME_KEYS).
  evaluation_keys: tuple[str, ...] = ()
  runtime_keys: tuple[str, ...] = ()
  summary_figures: Callable[[dict], list[str]] | None = None  # None: all.
  # (results, workdir) -> the lines a run ends with; None: `summary_line`.
  summary: Callable[[dict, Path], str] | None = None
  # config -> a context manager around loading and training that turns the
  # data source's read errors into UserErrors; None: none.
  reading: Callable[[ml_collections.ConfigDict], Any] | None = None
  loading_message: Callable[[ml_collections.ConfigDict], str] | None = None

  @classmethod
  def from_namespace(cls, name: str, namespace: dict, **fields) -> "Task":
    """The task made of a task module's names (pass its `globals()`): each
    field is the module's name of that field (`validate`, `make_model`,
    `context`, ...) or, for a constant, that name in capitals (`EVALS`,
    `UNITS`, `TEST_STREAMS`); `fields` are taken as given, over the module's
    names. A required field the module lacks is a TypeError naming it."""
    for field in dataclasses.fields(cls)[1:]:
      for key in (field.name, field.name.upper()):
        if field.name not in fields and key in namespace:
          fields[field.name] = namespace[key]
      if field.name not in fields and field.default is dataclasses.MISSING:
        raise TypeError(f"task {name!r}: the module defines neither "
                        f"{field.name!r} nor {field.name.upper()!r}")
    return cls(name=name, **fields)

  def train_and_evaluate(self, config: ml_collections.ConfigDict,
                         workdir: str | Path) -> dict:
    """Trains (resuming from `workdir` if it holds checkpoints), evaluates on
    the test split and writes results.json and the task's pictures there;
    returns the results.

    A finished workdir is not trained or evaluated again: its results.json
    is printed and returned, or, when only evaluation settings differ, the
    evaluators they change run again.
    """
    return run(self, config, workdir)


@dataclasses.dataclass(frozen=True)
class Restored:
  """A run's parameters as saved: `params` the variables dict the model's
  `apply` takes, `config` the run's, `step` the checkpoint's, `finished`
  whether results.json was written (the parameters evaluated there: the
  best epoch's with early stopping, else the last)."""
  params: Any
  config: ml_collections.ConfigDict
  step: int
  finished: bool


CONFIG_FILE = hooks.RunHistory.CONFIG_FILE


def restore(workdir: str | Path) -> Restored:
  """The parameters and config of a finished or interrupted run in
  `workdir`, for any task (the model: `task.make_model(restored.config)`).
  UserError when the workdir holds no run."""
  from cvae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from cvae_jax.training.checkpointing import Checkpointer  # pylint: disable=g-import-not-at-top
  workdir = Path(workdir).expanduser().absolute()
  results = workdir / results_file.RESULTS_FILE
  finished = results.exists()
  if finished:
    saved = json.loads(results.read_text())["config"]
  elif (workdir / CONFIG_FILE).exists():
    saved = json.loads((workdir / CONFIG_FILE).read_text())
  else:
    raise UserError(f"{workdir} holds no run (no {results_file.RESULTS_FILE} or "
                    f"{CONFIG_FILE}); pass the --workdir of a training run")
  best = finished and (workdir / "best" / "record.json").exists()
  checkpointer = Checkpointer(workdir / "best" if best else workdir, 1)
  try:
    state = checkpointer.restore_latest(None)
  finally:
    checkpointer.close()
  if state is None:
    raise UserError(f"{checkpointer.directory} has no readable checkpoint; "
                    "rerun the training command to make one")
  return Restored(state["params"], ml_collections.ConfigDict(saved),
                  int(state["step"]), finished)


def _report(unit: str):
  def report(progress: trainer.Progress, values: dict) -> str:
    terms = "".join(f", {k} {values[k]:.2f}" for k in ("reconstruction", "kl")
                    if k in values)
    return (f"epoch {progress.epoch} [{progress.step_in_epoch * progress.batch_size}"
            f"/{progress.num_examples}] loss {values['loss']:.4f} {unit}{terms}")
  return report


def _report_eval(unit: str):
  return lambda epoch, values: (f"epoch {epoch} validation loss "
                                f"{values['validation_loss']:.4f} {unit}")


def summary_line(task: Task, results: dict, workdir: Path) -> str:
  """The final figures, as the end of a run prints them."""
  if task.summary is not None:
    return task.summary(results, workdir)
  test = results["test"]
  shown = task.summary_figures(test) if task.summary_figures else list(test)
  values = ", ".join(f"{k} {test[k]:.4g}" for k in shown)
  return (f"test ({results['num_test_images']} {task.example_noun}): {values}; "
          f"results in {workdir / results_file.RESULTS_FILE}")


def build_evaluators(task: Task, config: ml_collections.ConfigDict,
                     model) -> list[Evaluator]:
  """The evaluators the config's `evals` (default: the task's) names that
  apply to its model; ConfigError for an unknown name (no data touched)."""
  names = tuple(config.get("evals", task.evals))
  return evaluators.build(names, task.evals, task.context(config, model),
                          task.own_evaluators(config, model))


def _must_rerun(evaluator: Evaluator, finished, common: tuple[str, ...]) -> bool:
  """Whether a finished run's figures of `evaluator` are stale (or missing)."""
  if (finished is None or evaluator.name not in
      finished.results.get("figures_by_evaluator", {})):
    return True
  return finished.changes(*common, *evaluator.keys)


def _merge(params: dict, over: dict) -> dict:
  """params with the subtrees of `over` put in place (nested dicts)."""
  merged = dict(params)
  for key, value in over.items():
    merged[key] = (_merge(params[key], value)
                   if isinstance(value, dict) and isinstance(params.get(key), dict)
                   else value)
  return merged


def train(task: Task, config: ml_collections.ConfigDict, workdir: Path,
          splits: dict, model=None):
  """Trains `task`'s model on the splits (resuming from `workdir`) with the
  task's per-epoch evaluation (early stopping when the config asks for it);
  returns (best or final state, seconds)."""
  model = task.make_model(config) if model is None else model
  example = task.make_init_batch(config, {k: jnp.asarray(v[:1])
                                          for k, v in splits["test"].items()})
  if task.is_cvae(config):
    model_check.check_model(model, example)  # One line on what is wrong.
  pretrained = task.pretrained(config, workdir, splits) if task.pretrained else None

  def init_fn(rng):
    if task.is_cvae(config):
      params = model.init(rng, example["target"], example["condition"])
    else:
      params = model.init(rng, example["condition"])
    return params if pretrained is None else _merge(params, pretrained)

  if task.epoch_evaluation is not None:
    evaluate = task.epoch_evaluation(config, model, splits,
                                     rng_stream(config, "validation"))
  else:
    evaluate = evaluation.validation_loss_evaluator(
        task.validation_loss_fn(config, model), splits["validation"],
        rng_stream(config, "validation"),
        task.context(config, model).get("batch_size"))
  if task.training_data is not None:
    data = task.training_data(config, splits)
  else:
    data = splits["train"]
    if task.training_keys is not None:
      data = {k: data[k] for k in task.training_keys}
    data = InMemoryData(data)
  start = time.time()
  state = trainer.train(config, workdir, init_fn, task.make_loss_fn(config, model),
                        data, hooks=hooks.standard(
                            config, evaluate=evaluate,
                            report=task.report or _report(task.unit),
                            report_eval=task.report_eval or _report_eval(task.unit),
                            identity=task.run_identity(config)))
  return state, time.time() - start


def run(task: Task, config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  """Trains (resuming from `workdir`), evaluates and writes results.json
  there; returns the results (see the module docstring)."""
  workdir = Path(workdir).expanduser().absolute()
  task.validate(config, workdir)  # The task's checks end with the trainer's.
  model = task.make_model(config)
  to_run = build_evaluators(task, config, model)  # Unknown names fail here.
  ctx = task.context(config, model)
  common = (ctx.key("num_images"), ctx.key("batch_size"))
  finished = results_file.finished_run(
      workdir, config, ("eval", "evals", *task.evaluation_keys),
      runtime_keys=task.runtime_keys)
  if finished is not None:
    if "figures_by_evaluator" not in finished.results:
      print(f"{workdir} holds a finished run written by an earlier version: "
            "evaluating it again (no training)", flush=True)
    else:
      results_file.announce(workdir, finished)
      if not finished.changed:
        print(summary_line(task, finished.results, workdir), flush=True)
        return finished.results
  workdir.mkdir(parents=True, exist_ok=True)
  print(task.loading_message(config) if task.loading_message else
        f"loading the {task.name} data...", flush=True)
  with task.reading(config) if task.reading else contextlib.nullcontext():
    splits = task.load_splits(config)
    state, train_seconds = train(task, config, workdir, splits, model)
  if finished is not None:
    train_seconds = finished.results.get("train_seconds_this_run", train_seconds)

  test = {k: v[:ctx.get("num_images", 0) or None]
          for k, v in splits["test"].items()}
  previous = finished.results if finished is not None else {}
  test_keys = jax.random.split(rng_stream(config, "test"), task.test_streams)
  figures, seconds, by_evaluator = {}, {}, {}
  for evaluator in to_run:
    if not _must_rerun(evaluator, finished, common):
      names = previous["figures_by_evaluator"][evaluator.name]
      figures.update({k: previous["test"][k] for k in names})
      if evaluator.name in previous.get("eval_seconds", {}):
        seconds[evaluator.name] = previous["eval_seconds"][evaluator.name]
      by_evaluator[evaluator.name] = names
      continue
    if evaluator.stream == "test":
      rng = (test_keys[evaluator.index] if evaluator.index < task.test_streams
             else jax.random.fold_in(rng_stream(config, "test"), evaluator.index))
    else:
      rng = rng_stream(config, evaluator.stream)
    begin = time.time()
    values = evaluator.run(state.params, test, rng, workdir)
    seconds[evaluator.name] = time.time() - begin
    values = {k: float(np.mean(v)) for k, v in values.items()}
    figures.update(values)
    by_evaluator[evaluator.name] = list(values)
  history = hooks.read_history(workdir)
  results = {
      **task.header(config, test),
      "test": figures,
      "units": task.units,
      "num_test_images": len(next(iter(test.values()))),
      "eval_seconds": {k: v for k, v in seconds.items() if by_evaluator.get(k)},
      "figures_by_evaluator": by_evaluator,
      **results_file.run_fields(workdir, config, int(state.step), train_seconds),
      "history": history,
      # "steps" is the evaluated (best) state's step; this, all steps trained.
      "steps_trained": hooks.steps_trained(history, state.step),
  }
  results_file.write_results(workdir, results)
  print(summary_line(task, results, workdir), flush=True)
  return results
