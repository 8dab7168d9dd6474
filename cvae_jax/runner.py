"""One runner for every task: a task is a small explicit spec (`Task`), the
runner owns the rest.

A task supplies what is its own: its config checks, its model, its data
splits, how a batch for `init` is made from the arrays, its training loss and
per-epoch evaluation, the settings its checkpoints depend on, and its
evaluators by name (library evaluators from `cvae_jax.evaluators`, built for
its model's `cvae_jax.predictors.Predictor`, and its pictures); the config's
`evals` names which run. The runner does, for every task, in this order:

  1. validate the config, its `evals` and the workdir (before any data is
     touched);
  2. the finished-run check: a workdir whose results.json has this config
     (evaluation settings aside) prints its saved figures and returns; when
     evaluation settings differ it says so and names the command that
     evaluates again (`evaluate`, `python -m cvae_jax.evaluate`);
  3. load the splits, build the model, train (or resume), with early
     stopping on a per-epoch figure when the config asks for it;
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

from cvae_jax import configs, evaluation, geco as geco_lib, model_check, schedules
from cvae_jax.errors import UserError, check_workdir
from cvae_jax.evaluators import Evaluator, build as build_evaluators_by_name
from cvae_jax.models.cvae import CVAE
from cvae_jax.training import InMemoryData, hooks, trainer
from cvae_jax.training import results as results_file

__all__ = ["RNG_STREAMS", "rng_stream", "Task", "Restored", "CONFIG_FILE",
           "restore", "summary_line", "validation_loss", "build_evaluators",
           "init_params", "train", "check", "run", "evaluate"]

RNG_STREAMS = {"validation": 1, "test": 2, "pictures": 3}


def rng_stream(config: ml_collections.ConfigDict, name: str) -> jax.Array:
  """The key of the named stream of a run (see the module docstring)."""
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), RNG_STREAMS[name])


@dataclasses.dataclass(frozen=True)
class Task:
  """A task: each field a callable taking the config first, or a constant.

  validate(config, workdir): raises ConfigError / UserError for settings
    that cannot work, loads no data (`check` adds the workdir's and the
    trainer's checks).
  make_model(config): the flax module (the only place a task reads
    `config.model`).
  load_splits(config): {"train", "validation", "test"} -> {name: array}.
  objective(config, model): what training minimises, per example:
    (params, batch, rng, kl_weight=1.0) -> [B] nats, or ([B] nats,
    {term: [B]}) with terms to log beside the loss.
  evaluation_batch(config, arrays): the objective's {"condition", "target",
    ...} batch from a batch of split arrays, with no randomness (default: the
    arrays are the batch); `init` sees it for one test example (a `CVAE` is
    initialised on both, any other module on the condition).
  run_identity(config): settings the checkpoints depend on beyond their
    shapes and the trainer's (resuming with others is refused; default
    none).
  evaluators(config, model): {name: Evaluator, or None where it does not
    apply to the model}; `evals` is the config's default list of them, and
    fixes each evaluator's test-stream key (`evaluators.build`).
  header(config, test arrays): results.json's leading fields; `units` its
    "units" entry.
  split_record(config), optional: which examples each split holds where the
    config alone does not fix it (LIDC's patients), called after
    `load_splits`: written to the workdir's split.json before training and
    put in results.json; a run resumed or evaluated on another split is
    refused (`results.keep_split`).

  The training loss (`loss_fn`) is the mean objective over a batch of the
  arrays made by `training_batch(config, arrays, rng) -> (batch, the key
  left for the objective)` (a random grader or box, augmentation; default:
  `evaluation_batch`), its KL weighted by `config.kl_schedule`. Per epoch the
  trainer evaluates `validation(config, model, splits, rng) -> (state,
  epoch) -> {figure: float}` (default: the mean objective over the validation
  split, `validation_loss`); early stopping may select on any of its figures.
  A task may instead give its own `make_loss_fn(config, model)` (the
  trainer's (params, arrays, rng, step) -> (loss, {name: scalar})) and
  `make_init_batch(config, test arrays of one example)`.

  Optional: `training_data(config, splits)` (default: InMemoryData of the
  train split's `training_keys`); `pretrained(config, workdir, splits)`
  (params to put over the initial ones); `reading(config)` (a context
  manager turning the data source's read errors into UserErrors);
  `evaluation_keys` (config keys beyond "eval" and "evals" that change the
  evaluation only) and `runtime_keys` (keys that change nothing, beyond
  `results.RUNTIME_KEYS`); the log lines (`unit`, `report`, `report_eval`,
  `loading_message`), the final line (`summary(results, workdir)`, or the
  figures `headline` names: names, or prefixes ending in "_") and
  `example_noun`; `test_streams`, the number of keys the test stream is split
  into.
  """
  name: str
  validate: Callable[[ml_collections.ConfigDict, Path], None]
  make_model: Callable[[ml_collections.ConfigDict], Any]
  load_splits: Callable[[ml_collections.ConfigDict], dict]
  evaluators: Callable[[ml_collections.ConfigDict, Any], dict]
  evals: tuple[str, ...]
  header: Callable[[ml_collections.ConfigDict, dict], dict]
  units: dict
  split_record: Callable[[ml_collections.ConfigDict], dict] | None = None
  run_identity: Callable[[ml_collections.ConfigDict], dict | None] | None = None
  objective: Callable[[ml_collections.ConfigDict, Any], Callable] | None = None
  evaluation_batch: Callable[[ml_collections.ConfigDict, dict], dict] | None = None
  training_batch: Callable[..., tuple[dict, jax.Array]] | None = None
  validation: Callable[..., Callable] | None = None
  make_loss_fn: Callable[[ml_collections.ConfigDict, Any], Callable] | None = None
  make_init_batch: Callable[[ml_collections.ConfigDict, dict], dict] | None = None
  training_data: Callable[[ml_collections.ConfigDict, dict], Any] | None = None
  training_keys: tuple[str, ...] | None = None
  pretrained: Callable[[ml_collections.ConfigDict, Path, dict], dict | None] | None = None
  reading: Callable[[ml_collections.ConfigDict], Any] | None = None
  evaluation_keys: tuple[str, ...] = ()
  runtime_keys: tuple[str, ...] = ()
  unit: str = "nats/image"
  report: Callable[[trainer.Progress, dict], str] | None = None
  report_eval: Callable[[int, dict], str] | None = None
  loading_message: Callable[[ml_collections.ConfigDict], str] | None = None
  summary: Callable[[dict, Path], str] | None = None
  headline: tuple[str, ...] | None = None
  example_noun: str = "images"
  test_streams: int = 1

  def __post_init__(self):
    if self.objective is None and (self.make_loss_fn is None
                                   or self.validation is None):
      raise TypeError(f"Task {self.name!r} needs an objective, or both "
                      "make_loss_fn and validation")

  def batch(self, config, arrays: dict) -> dict:
    """The objective's batch of split arrays, without randomness."""
    if self.evaluation_batch is None:
      return arrays
    return self.evaluation_batch(config, arrays)

  def loss_fn(self, config, model) -> Callable:
    """The trainer's loss: `make_loss_fn`'s, or the mean objective (see
    above), with the means of its terms and the KL weight beside it; with
    `config.geco` enabled, GECO's stateful loss (`cvae_jax.geco`)."""
    if self.make_loss_fn is not None:
      return self.make_loss_fn(config, model)
    objective, kl_weight = self.objective(config, model), schedules.kl_weight(config)
    constrained = geco_lib.from_config(config)

    def loss_fn(params, arrays, rng, step=0, *loss_state):
      if self.training_batch is None:
        batch = self.batch(config, arrays)
      else:
        batch, rng = self.training_batch(config, arrays, rng)
      weight = kl_weight(step)
      loss, terms = _with_terms(objective(params, batch, rng, weight))
      metrics = {"kl_weight": weight, **{k: jnp.mean(v) for k, v in terms.items()}}
      if constrained is None:
        return jnp.mean(loss), metrics
      # GECO weighs the reconstruction; the rest of the loss (the weighted
      # KL, a joint baseline's NLL) is what it minimises under the constraint.
      loss, next_state, geco_metrics = constrained.loss(
          terms["reconstruction"], loss - terms["reconstruction"], loss_state[0])
      return loss, ({**metrics, **geco_metrics}, next_state)
    return loss_fn

  def per_epoch(self, config, model, splits, rng) -> Callable:
    """The trainer's per-epoch evaluation: `validation`'s, or the mean
    objective over the validation split."""
    if self.validation is not None:
      return self.validation(config, model, splits, rng)
    objective = self.objective(config, model)
    return validation_loss(lambda config, model: lambda params, arrays, rng: (
        _with_terms(objective(params, self.batch(config, arrays), rng))[0]))(
            config, model, splits, rng)

  def train_and_evaluate(self, config: ml_collections.ConfigDict,
                         workdir: str | Path) -> dict:
    """Trains (resuming from `workdir` if it holds checkpoints), evaluates on
    the test split and writes results.json and the task's pictures there;
    returns the results. A finished workdir prints its saved figures."""
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
    if "geco_multiplier" in values:
      terms += f", GECO multiplier {values['geco_multiplier']:.4g}"
    return (f"epoch {progress.epoch} [{progress.step_in_epoch * progress.batch_size}"
            f"/{progress.num_examples}] loss {values['loss']:.4f} {unit}{terms}")
  return report


def _report_eval(unit: str):
  return lambda epoch, values: (f"epoch {epoch} validation loss "
                                f"{values['validation_loss']:.4f} {unit}")


def summary_line(task: Task, results: dict, workdir: Path) -> str:
  """The final figures, as the end of a run prints them (without "_std"
  spreads and per-candidate frequencies)."""
  if task.summary is not None:
    return task.summary(results, workdir)
  test = results["test"]
  shown = [k for k in test if not k.endswith("_std") and "mode_frequency_" not in k
           and (task.headline is None or k in task.headline or any(
               k.startswith(p) for p in task.headline if p.endswith("_")))]
  values = ", ".join(f"{k} {test[k]:.4g}" for k in shown)
  return (f"test ({results['num_test_images']} {task.example_noun}): {values}; "
          f"results in {workdir / results_file.RESULTS_FILE}")


def _with_terms(value) -> tuple:
  """An objective's value as ([B] loss, {term: [B]})."""
  return value if isinstance(value, tuple) else (value, {})


def validation_loss(per_example_loss: Callable) -> Callable:
  """A `Task.validation` from `per_example_loss(config, model) ->
  (params, arrays, rng) -> [B]`: its mean over the validation split, batches
  of eval.batch_size, the same draws every epoch."""
  def validation(config, model, splits, rng):
    return evaluation.validation_loss_evaluator(
        per_example_loss(config, model), splits["validation"], rng,
        config.eval.batch_size)
  return validation


def build_evaluators(task: Task, config: ml_collections.ConfigDict, model,
                     names=None) -> list[Evaluator]:
  """The evaluators `names` (default: the config's `evals`, else the task's)
  asks for that apply to the model; ConfigError for an unknown name (no
  data touched)."""
  names = tuple(config.get("evals", task.evals) if names is None else names)
  return build_evaluators_by_name(names, task.evals, task.evaluators(config, model))


def init_params(model, rng: jax.Array, batch: dict):
  """`model.init` on a batch: a `CVAE`, or a model with `elbo_terms` (a
  hierarchical CVAE), on (target, condition), which runs every one of its
  nets; any other module on the condition."""
  if isinstance(model, CVAE) or callable(getattr(model, "elbo_terms", None)):
    return model.init(rng, batch["target"], batch["condition"])
  return model.init(rng, batch["condition"])


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
  one = {k: jnp.asarray(v[:1]) for k, v in splits["test"].items()}
  example = (task.make_init_batch(config, one) if task.make_init_batch
             else task.batch(config, one))
  if isinstance(model, CVAE):
    model_check.check_model(model, example)  # One line on what is wrong.
  pretrained = task.pretrained(config, workdir, splits) if task.pretrained else None

  def init_fn(rng):
    params = init_params(model, rng, example)
    return params if pretrained is None else _merge(params, pretrained)

  evaluate = task.per_epoch(config, model, splits, rng_stream(config, "validation"))
  if task.training_data is not None:
    data = task.training_data(config, splits)
  else:
    data = splits["train"]
    if task.training_keys is not None:
      data = {k: data[k] for k in task.training_keys}
    data = InMemoryData(data)
  start = time.time()
  constrained = geco_lib.from_config(config) if task.make_loss_fn is None else None
  state = trainer.train(config, workdir, init_fn, task.loss_fn(config, model),
                        data, hooks=hooks.standard(
                            config, evaluate=evaluate,
                            report=task.report or _report(task.unit),
                            report_eval=task.report_eval or _report_eval(task.unit),
                            identity=_identity(task, config, constrained)),
                        loss_state=None if constrained is None else constrained.init())
  return state, time.time() - start


def _identity(task: Task, config, constrained) -> dict | None:
  """The run identity: the task's, and GECO's settings when it is on."""
  identity = task.run_identity(config) if task.run_identity else None
  if constrained is not None:
    identity = {**(identity or {}), "geco": dataclasses.asdict(constrained)}
  return identity


def _keep_split(task: Task, config, workdir: Path) -> dict:
  """The task's split record ({} without one), kept in the workdir."""
  record = task.split_record(config) if task.split_record else {}
  if record:
    results_file.keep_split(workdir, record)
  return record


def _test_arrays(config, splits: dict) -> dict:
  """The first `eval.num_images` test examples (0 or none: all)."""
  count = config.get("eval", {}).get("num_images", 0) or None
  return {k: v[:count] for k, v in splits["test"].items()}


def _evaluate(task: Task, config, to_run: list[Evaluator], params, test: dict,
              workdir: Path) -> tuple[dict, dict, dict, dict]:
  """Runs `to_run`; returns (figures, seconds, figure names, estimators), by
  evaluator name for the last three."""
  test_keys = jax.random.split(rng_stream(config, "test"), task.test_streams)
  figures, seconds, by_evaluator, estimators = {}, {}, {}, {}
  for evaluator in to_run:
    if evaluator.stream == "test":
      rng = (test_keys[evaluator.index] if evaluator.index < task.test_streams
             else jax.random.fold_in(rng_stream(config, "test"), evaluator.index))
    else:
      rng = rng_stream(config, evaluator.stream)
    begin = time.time()
    values = evaluator.run(params, test, rng, workdir)
    seconds[evaluator.name] = time.time() - begin
    values = {k: float(np.mean(v)) for k, v in values.items()}
    figures.update(values)
    by_evaluator[evaluator.name] = list(values)
    estimators.update({k: v for k, v in evaluator.estimators.items() if k in values})
  return figures, seconds, by_evaluator, estimators


def check(task: Task, config: ml_collections.ConfigDict, workdir: str | Path) -> None:
  """UserError / ConfigError, before any data is read, for a workdir that is
  not a directory, settings the task cannot work with (`task.validate`) or
  the trainer cannot (`trainer.validate_trainer_config`), with the model's
  recipe (`configs.with_recipe`) applied."""
  config = configs.with_recipe(config)
  workdir = Path(workdir).expanduser().absolute()
  check_workdir(workdir)
  task.validate(config, workdir)
  trainer.validate_trainer_config(config)


def _prepare(task: Task, config, workdir, names=None):
  """(config with its model's recipe, workdir, model, evaluators to run, the
  finished run or None), after `check`; an unknown evaluator name fails
  here, before any data."""
  config = configs.with_recipe(config)
  check(task, config, workdir)
  workdir = Path(workdir).expanduser().absolute()
  model = task.make_model(config)
  geco_lib.check_model(config, model)
  to_run = build_evaluators(task, config, model, names)
  finished = results_file.finished_run(
      workdir, config, ("eval", "evals", *task.evaluation_keys),
      runtime_keys=task.runtime_keys)
  return config, workdir, model, to_run, finished


def run(task: Task, config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  """Trains (resuming from `workdir`), evaluates and writes results.json
  there; returns the results (see the module docstring)."""
  config, workdir, model, to_run, finished = _prepare(task, config, workdir)
  if finished is not None:
    results_file.announce(workdir, finished)
    print(summary_line(task, finished.results, workdir), flush=True)
    return finished.results
  workdir.mkdir(parents=True, exist_ok=True)
  if configs.recipe_of(config):  # What the recipe set over the command line's values.
    print(f"{config.model}'s recipe: " + ", ".join(
        f"{k}={v}" for k, v in configs.recipe_of(config).items())
          + f" (change one with --config.recipes.{config.model}.<key>)", flush=True)
  print(task.loading_message(config) if task.loading_message else
        f"loading the {task.name} data...", flush=True)
  with task.reading(config) if task.reading else contextlib.nullcontext():
    splits = task.load_splits(config)
    split = _keep_split(task, config, workdir)
    state, train_seconds = train(task, config, workdir, splits, model)
  test = _test_arrays(config, splits)
  figures, seconds, by_evaluator, estimators = _evaluate(
      task, config, to_run, state.params, test, workdir)
  history = hooks.read_history(workdir)
  results = {
      "task": task.name,
      **task.header(config, test),
      **split,
      "test": figures,
      "units": task.units,
      "estimators": estimators,
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


def evaluate(task: Task, config: ml_collections.ConfigDict, workdir: str | Path,
             names=None) -> dict:
  """Runs the named evaluators (default: the config's `evals`) again on the
  finished run in `workdir`, with `config`'s evaluation settings, and
  updates its results.json: those evaluators' figures are replaced, the
  others kept, and the config's evaluation settings recorded. Returns the
  results. UserError when the workdir holds no finished run of `config`
  (settings other than evaluation ones differ)."""
  config, workdir, model, to_run, finished = _prepare(task, config, workdir, names)
  if finished is None:
    raise UserError(f"{workdir} holds no finished run of this config (no "
                    f"{results_file.RESULTS_FILE}, or training settings differ); "
                    "train it first with the task's command")
  restored = restore(workdir)
  print(f"evaluating the run in {workdir} again: "
        f"{', '.join(e.name for e in to_run)}", flush=True)
  with task.reading(config) if task.reading else contextlib.nullcontext():
    splits = task.load_splits(config)
    split = _keep_split(task, config, workdir)
  test = _test_arrays(config, splits)
  figures, seconds, by_evaluator, estimators = _evaluate(
      task, config, to_run, restored.params, test, workdir)
  results = {**finished.results, **task.header(config, test), **split}
  stale = {f for name in by_evaluator
           for f in results.get("figures_by_evaluator", {}).get(name, [])}
  results["test"] = {**{k: v for k, v in results["test"].items() if k not in stale},
                     **figures}
  results["estimators"] = {**{k: v for k, v in results.get("estimators", {}).items()
                              if k not in stale}, **estimators}
  results["eval_seconds"] = {**results.get("eval_seconds", {}), **{
      k: v for k, v in seconds.items() if by_evaluator.get(k)}}
  results["figures_by_evaluator"] = {**results.get("figures_by_evaluator", {}),
                                     **by_evaluator}
  results["num_test_images"] = len(next(iter(test.values())))
  results["config"] = config.to_dict()
  results_file.write_results(workdir, results)
  print(summary_line(task, results, workdir), flush=True)
  return results
