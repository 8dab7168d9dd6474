"""What the benchmark scripts share: list flags, one-line refusals of a bad
flag, where a --quick run writes; and the table scripts' rows, runs and
Markdown. A table script defines only its rows, the record it keeps of a
run's results.json, and its Markdown layout. Finished runs in --root are
reused (delete a workdir to redo it), an interrupted one resumes, wall times
add up in each workdir's wall_seconds.json; a row recorded in the table's
JSON whose workdir is gone (another machine) is kept (unless
--rerun_recorded), as are rows outside this invocation. The table goes to
--output, its records as JSON next to it.
"""

import dataclasses
import functools
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

from absl import app, flags, logging

from cvae_jax import cli, configs


def define_list(name: str, default: list[str] | None, help_text: str,
                choices=None, minimum: int = 1):
  """A comma-separated list flag whose every entry is one of `choices` (None:
  a whole number >= `minimum`), anything else refused in one line."""
  allowed = (", ".join(map(str, choices)) if choices
             else f"whole numbers >= {minimum}")
  ok = (lambda v: v in set(map(str, choices))) if choices else (
      lambda v: v.isdigit() and int(v) >= minimum)
  holder = flags.DEFINE_list(name, default, f"{help_text} Any of: {allowed}.")
  flags.register_validator(name, lambda values: all(map(ok, values or ())),
                           message=f"--{name} takes a comma-separated list of {allowed}")
  return holder


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag or value refused in one line
  (`cli.fail`: `error: ...`, exit code 2) instead of absl's two."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    cli.fail(f"{e}; see --helpfull")


def run(main: Callable[[list[str]], Any]) -> None:
  """`app.run(main)` with its flags parsed by `parse_flags`."""
  app.run(main, flags_parser=parse_flags)


def output_path(explicit: str | None, published: str | Path, quick: bool,
                quick_dir: str | Path) -> Path:
  """Where a script writes its table or figures: `explicit` (its --output or
  --json) when given; else, with --quick, `quick_dir`/<the published file's
  name> (never the published figures); else `published` (under docs/)."""
  if explicit:
    return Path(explicit)
  return Path(quick_dir) / Path(published).name if quick else Path(published)


def markdown(header: list[str], rows: list[list[str]]) -> str:
  """A Markdown table: the header, its rule, a line of cells per row."""
  return "\n".join("| " + " | ".join(cells) + " |" for cells in
                   [header, ["---"] * len(header), *rows]) + "\n"


def timed_run(train_and_evaluate, config, workdir: Path, title: str,
              finished: Callable[[dict], bool] = lambda results: True
              ) -> tuple[dict, float]:
  """Trains and evaluates one row in `workdir` (resuming), unless a finished
  run with a timing is there and `finished(its results)` holds; returns
  (its results.json, the wall seconds of every invocation in all, which add
  up in workdir/wall_seconds.json)."""
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


def row_name(label: str) -> str:
  """A table row's label as a workdir name: "mdn (5 components)" ->
  mdn_5_components, "cvae + omission 0.4" -> cvae_omission_04."""
  return re.sub(r"[ ,+]+", "_", re.sub(r"[()=.]", "", label))


@dataclasses.dataclass(frozen=True)
class TableFlags:
  """The flags every table script has (absl FlagHolders) and its name."""
  name: str
  root: Any
  output: Any
  quick: Any
  data_dir: Any
  rerun_recorded: Any = None

  def run_table(self, key: Callable[[dict], tuple], rows, sort_key: Callable,
                markdown_table: Callable[[list[dict]], str]) -> tuple[Path, list]:
    """Runs the table's `rows`, (key, run(recorded row or None) -> record)
    pairs, writing the table (`markdown_table` of the records sorted by
    `sort_key`) to `output_path()` and its JSON after each, keeping the
    records already in the JSON (by `key(record)`); prints it. Returns the
    table's path and its records in order."""
    logging.set_verbosity(logging.WARNING)
    output = self.output_path()
    output.parent.mkdir(parents=True, exist_ok=True)
    recorded = output.with_suffix(".json")
    records = ({key(r): r for r in json.loads(recorded.read_text())}
               if recorded.exists() else {})
    for row_key, run in rows:
      records[row_key] = run(records.get(row_key))
      ordered = sorted(records.values(), key=sort_key)
      output.write_text(markdown_table(ordered))
      recorded.write_text(json.dumps(ordered, indent=2) + "\n")
    ordered = sorted(records.values(), key=sort_key)
    print(markdown_table(ordered))
    return output, ordered

  def output_path(self) -> Path:
    """--output, else docs/NAME.md, or ROOT/quick/NAME.md with --quick."""
    return output_path(self.output.value, f"docs/{self.name}.md",
                       self.quick.value, Path(self.root.value) / "quick")

  def workdir(self, part: str, label: str) -> Path:
    """ROOT/{quick,full}/PART/<row_name(label)>."""
    return (Path(self.root.value) / ("quick" if self.quick.value else "full")
            / part / row_name(label))

  def run_row(self, task, get_config: Callable, quick: dict, fields: dict,
              part: str, label: str, title: str, overrides: dict,
              recorded: dict | None) -> dict:
    """The record of row `label` of part `part`: `fields`, its command, the
    run's test figures, training facts and wall seconds. The run is
    `get_config()` of task module `task` with the dotted `overrides`,
    --data_dir and, with --quick, `quick`; `recorded` (the row as an earlier
    table kept it) stands when the workdir is gone, unless --rerun_recorded."""
    workdir = self.workdir(part, label)
    if not workdir.exists() and recorded is not None and not self.rerun_recorded.value:
      return recorded
    config = configs.with_overrides(get_config(), {
        **overrides, "data_dir": self.data_dir.value,
        **(quick if self.quick.value else {})})
    results, spent = timed_run(task.train_and_evaluate, config, workdir, title)
    name = task.TASK.name
    command = " ".join([f"python -m train.{name}", f"--config=train/configs/{name}.py",
                        *(f"--config.{k}={v}" for k, v in overrides.items())])
    return {**fields, "command": command, "test": results["test"],
            "best_epoch": results["best_epoch"],
            "max_epochs": results["config"]["num_epochs"], "steps": results["steps"],
            "num_test_images": results["num_test_images"],
            "num_samples": results["num_samples"], "wall_seconds": spent}

  def task_rows(self, task, get_config: Callable, quick: dict, rows) -> list:
    """`run_table`'s rows of `rows`, (fields, part, label, title, overrides)
    each run by `run_row`; a row's key is its fields' values."""
    return [(tuple(row[0].values()),
             functools.partial(self.run_row, task, get_config, quick, *row))
            for row in rows]


def define_table_flags(name: str, quick: str, rerun_recorded: bool = True
                       ) -> TableFlags:
  """--root (workdirs/NAME), --output, --quick (`quick` says what it runs),
  --data_dir and, unless told otherwise, --rerun_recorded."""
  return TableFlags(
      name=name, root=flags.DEFINE_string("root", f"workdirs/{name}", "Workdirs go here."),
      output=flags.DEFINE_string(
          "output", None, f"Markdown table; default docs/{name}.md, or "
          f"ROOT/quick/{name}.md with --quick."),
      quick=flags.DEFINE_bool("quick", False, quick),
      data_dir=flags.DEFINE_string("data_dir", "~/tensorflow_datasets", "TFDS dir."),
      rerun_recorded=flags.DEFINE_bool(
          "rerun_recorded", False, "Train rows already recorded in the JSON "
          "again when their workdir is missing, instead of reusing the record.")
      if rerun_recorded else None)
