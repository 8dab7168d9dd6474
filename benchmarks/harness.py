"""What every table script shares: where its table goes, the rows it has
recorded, one row's timed run, and writing the table after every row.

A table script defines only its rows (configs and workdirs), the record it
keeps of a run's results.json, and its Markdown layout.
"""

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

from absl import flags

from cvae_jax import configs


def output_path(output: str | None, root: str, quick: bool, name: str) -> Path:
  """--output, else docs/NAME.md, or ROOT/quick/NAME.md with --quick."""
  path = Path(output or (Path(root) / "quick" / f"{name}.md" if quick
                         else f"docs/{name}.md"))
  path.parent.mkdir(parents=True, exist_ok=True)
  return path


def load_records(output: Path, key: Callable[[dict], tuple]) -> dict:
  """The rows recorded in the JSON beside the table, by `key(record)`."""
  path = output.with_suffix(".json")
  if not path.exists():
    return {}
  return {key(r): r for r in json.loads(path.read_text())}


def save(output: Path, records: dict, sort_key: Callable[[dict], tuple],
         markdown: Callable[[list[dict]], str]) -> list[dict]:
  """Writes the table and its JSON (rows sorted by `sort_key`); returns them."""
  ordered = sorted(records.values(), key=sort_key)
  output.write_text(markdown(ordered))
  output.with_suffix(".json").write_text(json.dumps(ordered, indent=2) + "\n")
  return ordered


def timed_run(train_and_evaluate, config, workdir: Path, title: str,
              finished: Callable[[dict], bool] = lambda results: True
              ) -> tuple[dict, float]:
  """Trains and evaluates one row in `workdir` (resuming), unless a finished
  run with a timing is there and `finished(its results)` holds. The wall
  seconds of every invocation add up in workdir/wall_seconds.json, so an
  interrupted table resumes with the right total.

  Returns:
    (results.json of the run, wall seconds spent on it in all).
  """
  timing, results_path = workdir / "wall_seconds.json", workdir / "results.json"
  spent = json.loads(timing.read_text())["wall_seconds"] if timing.exists() else 0.0
  if not (results_path.exists() and timing.exists()
          and finished(json.loads(results_path.read_text()))):
    print(f"=== {title}", flush=True)
    start = time.time()
    try:
      train_and_evaluate(config, workdir)
    finally:  # Also when interrupted: the resumed run adds to it.
      spent += time.time() - start
      workdir.mkdir(parents=True, exist_ok=True)
      timing.write_text(json.dumps({"wall_seconds": spent}) + "\n")
  return json.loads(results_path.read_text()), spent


def command(entry_point: str, overrides: dict) -> str:
  """The command line of a row: `python -m train.<entry_point>` with its
  config file and --config.<key>=<value> for each override."""
  return " ".join([f"python -m train.{entry_point}",
                   f"--config=train/configs/{entry_point}.py",
                   *(f"--config.{k}={v}" for k, v in overrides.items())])


def run_row(train_and_evaluate, config, workdir: Path, title: str,
            recorded: dict | None, rerun_recorded: bool, fields: dict) -> dict:
  """One row's record: `fields` (what names the row), the run's test
  figures and training facts, and its wall seconds. A finished run in
  `workdir` is reused; when the workdir is gone, so is `recorded` (the row
  as an earlier table kept it), unless `rerun_recorded`."""
  if not workdir.exists() and recorded is not None and not rerun_recorded:
    return recorded
  results, spent = timed_run(train_and_evaluate, config, workdir, title)
  return {**fields, "test": results["test"], "best_epoch": results["best_epoch"],
          "max_epochs": results["config"]["num_epochs"], "steps": results["steps"],
          "num_test_images": results["num_test_images"],
          "num_samples": results["num_samples"], "wall_seconds": spent}


@dataclasses.dataclass(frozen=True)
class TableFlags:
  """The flags every table script has (absl FlagHolders)."""
  root: Any
  output: Any
  quick: Any
  data_dir: Any
  rerun_recorded: Any = None

  def workdir(self, part: str, label: str) -> Path:
    """ROOT/{quick,full}/PART/<the row label as a name>: parentheses, "="
    and "." dropped, runs of spaces, "," and "+" made one "_" ("mdn (5
    components)" -> mdn_5_components; a name passes as is)."""
    name = re.sub(r"[ ,+]+", "_", re.sub(r"[()=.]", "", label))
    return (Path(self.root.value) / ("quick" if self.quick.value else "full")
            / part / name)

  def run_row(self, task, get_config: Callable, overrides: dict, quick: dict,
              part: str, label: str, title: str, recorded: dict | None,
              fields: dict) -> dict:
    """`run_row` for the row `label` of table part `part`: task module
    `task`'s default config (`get_config()`) with the dotted `overrides`,
    --data_dir and, with --quick, the `quick` overrides; its record keeps
    `fields` and the row's command line."""
    config = configs.with_overrides(get_config(), {
        **overrides, "data_dir": self.data_dir.value,
        **(quick if self.quick.value else {})})
    return run_row(task.train_and_evaluate, config, self.workdir(part, label),
                   title, recorded, bool(self.rerun_recorded.value), {
                       **fields, "command": command(task.TASK.name, overrides)})


def define_table_flags(name: str, quick: str, rerun_recorded: bool = True
                       ) -> TableFlags:
  """--root (workdirs/NAME), --output, --quick (`quick` says what it runs),
  --data_dir and, unless told otherwise, --rerun_recorded."""
  return TableFlags(
      root=flags.DEFINE_string("root", f"workdirs/{name}", "Workdirs go here."),
      output=flags.DEFINE_string(
          "output", None, f"Markdown table; default docs/{name}.md, or "
          f"ROOT/quick/{name}.md with --quick."),
      quick=flags.DEFINE_bool("quick", False, quick),
      data_dir=flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "TFDS dir."),
      rerun_recorded=flags.DEFINE_bool(
          "rerun_recorded", False, "Train rows already recorded in the JSON "
          "again when their workdir is missing, instead of reusing the record.")
      if rerun_recorded else None)
