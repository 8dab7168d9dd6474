"""What every table script shares: where its table goes, the rows it has
recorded, one row's timed run, and writing the table after every row.

A table script defines only its rows (configs and workdirs), the record it
keeps of a run's results.json, and its Markdown layout.
"""

import json
import time
from pathlib import Path
from typing import Callable


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
