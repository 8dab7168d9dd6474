"""results.json: a finished run's figures and config, so a rerun reuses them.

Every task writes `results.json` (with `"config": config.to_dict()`) when its
run ends, and starts with `finished_run(workdir, config, evaluation_keys)`:

  * same config (up to keys that change no figure): the run is finished; the
    task prints its figures from results.json and returns them (seconds, and
    TensorFlow is never imported);
  * only evaluation keys differ: the saved figures are printed all the same,
    with the command that evaluates again (`cvae_jax.evaluate`);
  * anything else (no results.json, more epochs, another model): None, and
    the task trains or resumes as usual.
"""

import dataclasses
import json
import os
from pathlib import Path

import ml_collections

from cvae_jax import configs
from cvae_jax.errors import UserError

__all__ = ["RESULTS_FILE", "RUNTIME_KEYS", "FinishedRun", "config_differences",
           "finished_run", "announce", "write_results", "keep_split", "best_epoch",
           "run_fields", "SPLIT_FILE"]

RESULTS_FILE = "results.json"
# Which examples each split holds, where the config does not fix it (LIDC's
# patients come from the files found at its path).
SPLIT_FILE = "split.json"
# Keys that change neither the trained parameters nor any figure: the
# trainer's dispatch, log and checkpoint cadence, where data is read from,
# and the models' recipes (applied to the other keys before a run,
# `configs.with_recipe`: what a recipe set is compared there).
RUNTIME_KEYS = ("steps_per_dispatch", "log_every_steps", "log_metrics",
                "checkpoint_every_steps", "keep_checkpoints", "data_dir",
                "download", "recipes")


@dataclasses.dataclass(frozen=True)
class FinishedRun:
  """results.json of a finished run; `changed`: evaluation key -> (old, new)."""
  results: dict
  changed: dict

  def describe_changes(self) -> str:
    """`changed` as "key old -> new, ..."."""
    return ", ".join(f"{k} {old!r} -> {new!r}"
                     for k, (old, new) in self.changed.items())


def _matches(key: str, names) -> bool:
  return any(key == n or key.startswith(f"{n}.") for n in names)


def config_differences(saved: dict, config: ml_collections.ConfigDict) -> dict:
  """Dotted key -> (saved value, current value) where they differ (JSON view:
  tuples compare as the lists they were saved as). A trainer field the saved
  config lacks (written before the field existed) at its default is no
  difference: the earlier version ran as the default does."""
  defaults = configs.flatten(configs.trainer_defaults().to_dict())
  old = configs.flatten(saved)
  new = configs.flatten(json.loads(json.dumps(config.to_dict())))
  return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
          if old.get(k) != new.get(k)
          and not (k not in old and k in defaults and new[k] == defaults[k])}


def finished_run(workdir: str | Path, config: ml_collections.ConfigDict,
                 evaluation_keys=(), runtime_keys=()) -> FinishedRun | None:
  """The finished run in `workdir` that `config` describes, if any.

  Args:
    evaluation_keys: keys (dotted, or a group such as "eval") that change
      the evaluation only.
    runtime_keys: task keys that change nothing (RUNTIME_KEYS are added).

  Returns:
    None unless results.json exists and its config equals `config` in every
    key outside `evaluation_keys` and the runtime keys.
  """
  path = Path(workdir).expanduser() / RESULTS_FILE
  try:
    results = json.loads(path.read_text())
    saved = results["config"]
  except (OSError, ValueError, KeyError, TypeError):
    return None
  differences = config_differences(saved, config)
  ignored = (*RUNTIME_KEYS, *runtime_keys)
  if any(not _matches(k, (*evaluation_keys, *ignored)) for k in differences):
    return None
  changed = {k: v for k, v in differences.items() if not _matches(k, ignored)}
  return FinishedRun(results, changed)


def announce(workdir: Path, finished: FinishedRun) -> None:
  """The line a rerun of a finished workdir starts with."""
  if finished.changed:
    print(f"{workdir} holds a finished run; evaluation settings differ "
          f"({finished.describe_changes()}): these are its saved figures. To "
          f"evaluate it again with them: python -m cvae_jax.evaluate "
          f"--workdir={workdir} [--config.evals=...] and the same --config "
          "overrides", flush=True)
  else:
    print(f"{workdir} holds a finished run of this config: its figures from "
          f"{RESULTS_FILE} (nothing recomputed; a new --workdir trains anew)",
          flush=True)


def _write_json(path: Path, value: dict) -> Path:
  """Writes `value` to `path` atomically (a kill leaves the old or new)."""
  from cvae_jax import sharding  # pylint: disable=g-import-not-at-top
  if not sharding.is_main_process():  # Under jax.distributed: process 0 writes.
    return path
  scratch = path.with_suffix(".json.tmp")
  scratch.write_text(json.dumps(value, indent=2) + "\n")
  os.replace(scratch, path)
  return path


def write_results(workdir: Path, results: dict) -> Path:
  """Writes workdir/results.json atomically."""
  return _write_json(Path(workdir) / RESULTS_FILE, results)


def keep_split(workdir: Path, record: dict) -> None:
  """Writes the split `record` to workdir/split.json when the workdir has
  none, before any training, so an interrupted run has it too.

  Raises:
    UserError: the workdir's split.json records another split (the data at
      the path changed since its run started) or is not JSON.
  """
  path = Path(workdir) / SPLIT_FILE
  if not path.exists():
    _write_json(path, record)
    return
  try:
    kept = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise UserError(f"{path} is not JSON ({error}); delete it to record the "
                    "split of the data as it is now") from None
  if kept != record:
    raise UserError(f"the data splits differently from the split this run in "
                    f"{workdir} started on ({path}); point the data path back "
                    "at the files it trained on, or use a new --workdir")


def best_epoch(workdir: Path) -> dict:
  """{"epoch", "metric", "value"} of the early-stopping record in workdir/best (the
  epoch whose parameters were evaluated), or Nones without early stopping."""
  path = Path(workdir) / "best" / "record.json"
  return (json.loads(path.read_text()) if path.exists()
          else {"epoch": None, "metric": None, "value": None})


def run_fields(workdir: Path, config: ml_collections.ConfigDict, steps: int,
               train_seconds: float) -> dict:
  """The fields every task's results.json ends with: the early-stopping
  record's epoch, metric and value, steps trained, this run's training time, the
  devices and the config (which `finished_run` compares)."""
  import jax  # pylint: disable=g-import-not-at-top
  best = best_epoch(workdir)
  return {"best_epoch": best["epoch"], "best_metric": best.get("metric"),
          "best_value": best["value"],
          "steps": steps, "train_seconds_this_run": train_seconds,
          "devices": [str(d) for d in jax.local_devices()],
          "config": config.to_dict()}
