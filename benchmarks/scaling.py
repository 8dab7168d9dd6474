"""Data-parallel scaling of the generic trainer's train step, per example.

  python -m benchmarks.scaling   # all five examples
  python -m benchmarks.scaling --examples=prob_unet   # one row, merged in
  python -m benchmarks.scaling --examples=bbox --devices=1,8 --noprocesses
  python -m benchmarks.scaling --quick   # a check, in workdirs/scaling/quick/

For each example (EXAMPLES) at its config's model and global batch, the
images per second of `trainer.train` (the task's model and loss on
`fake_data` arrays) on 1, 2, 4 and 8 fake devices of one process (a
subprocess each) and on 2 processes x 1 device (`jax.distributed` on
localhost); a batch that does not divide by the device count is skipped.
Epochs are timed by `speed_harness.EpochClock` (no compilation, checkpoint
or evaluation); epoch 0 is the warm-up, the figure the best of the next
`repeats`. On a CPU the fake devices share the cores: the ratio to 1 device
is the cost of the data-parallel machinery, not a speed-up.

Writes `--json` (merged with the records of examples and settings not run
this time) and the Markdown page beside it (.md).
"""

import dataclasses
import importlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import app, flags
import jax

from benchmarks import fake_data, harness, speed_harness
from cvae_jax.training import InMemoryData


@dataclasses.dataclass(frozen=True)
class Example:
  """The cvae_jax.tasks module and train/configs file of its name at `model`,
  and the epoch length (a multiple of the dispatch; a few seconds on 1 device)."""
  title: str
  model: str
  steps_per_epoch: int
  quick_steps_per_epoch: int


EXAMPLES = {
    # 2000 steps of batch 20 (MNIST's epoch is 3000), 100-step dispatches.
    "mnist_label": Example("label CVAE", "label_cvae", 2000, 300),
    # 260 steps of batch 128 (the config's epoch is 390), 130-step dispatches.
    "mnist_quadrant": Example("quadrant CVAE (1 quadrant)", "cvae", 260, 260),
    # Conv nets: one step per dispatch (steps_per_dispatch=1 in their configs).
    "segmentation": Example("Sohn segmentation CVAE", "cvae", 51, 3),
    "prob_unet": Example("Probabilistic U-Net", "prob_unet", 13, 3),
    "bbox": Example("bounding-box CVAE (image)", "cvae", 81, 3),
}
PROCESSES_SETTING = "2x1"  # 2 processes x 1 device.
COLUMNS = {"1": "1 device", "2": "2 devices", "4": "4 devices", "8": "8 devices",
           PROCESSES_SETTING: "2 processes x 1"}
REPO = Path(__file__).resolve().parents[1]
_WORKER_TIMEOUT_S = 1800

_EXAMPLES = harness.define_list("examples", list(EXAMPLES), "Examples to time.",
                                EXAMPLES)
_DEVICES = harness.define_list("devices", ["1", "2", "4", "8"],
                               "Device counts of the one-process settings.")
_PROCESSES = flags.DEFINE_bool("processes", True, "Also time 2 processes x 1 device.")
_QUICK = flags.DEFINE_bool("quick", False, "Short epochs and one timed epoch "
                           "(--repeats ignored): a check, not a figure.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed epochs; the best counts.",
                                lower_bound=1)
PUBLISHED = "docs/scaling_cpu.json"
QUICK_DIR = "workdirs/scaling/quick"
_JSON = flags.DEFINE_string(
    "json", None, "Write the figures here (merged with its records); default "
    f"{PUBLISHED}, or {QUICK_DIR}/scaling_cpu.json with --quick.")
_WORKER = flags.DEFINE_string("worker", None, "Internal: the JSON spec of one "
                              "worker process (`launch`).")


def config_of(name: str):
  config = importlib.import_module(f"train.configs.{name}").get_config()
  if isinstance(config.get("model"), str):  # (mnist_label's is a network.)
    config.model = EXAMPLES[name].model
  return config


def time_example(name: str, workdir: Path, steps_per_epoch: int, repeats: int) -> dict:
  """Runs trainer.train on random data; returns this process's figures."""
  config = config_of(name)
  config.num_epochs = 1 + repeats
  batch_size = config.batch_size
  task = importlib.import_module(f"cvae_jax.tasks.{name}")
  arrays = fake_data.training_arrays(task, config, steps_per_epoch * batch_size)
  _, init_fn, loss_fn = fake_data.step_pieces(task, config, arrays)
  clock = speed_harness.timed_training(config, workdir, init_fn, loss_fn,
                                       InMemoryData(arrays))
  seconds = [clock.ended[e] - clock.first_read[e] for e in range(1, 1 + repeats)]
  timed_steps = steps_per_epoch - clock.first_steps
  return {
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
      "process_count": jax.process_count(), "batch_size": batch_size,
      "per_device_batch": batch_size // jax.device_count(),
      "steps_per_dispatch": clock.first_steps, "steps_per_epoch": steps_per_epoch,
      "timed_steps": timed_steps, "timed_epochs": repeats, "window_s": seconds,
      "warm_up_epoch_s": clock.ended[0] - clock.begun,
      "images_per_s": timed_steps * batch_size / min(seconds),
      "ms_per_step": 1e3 * min(seconds) / timed_steps,
      "all_images_per_s": [timed_steps * batch_size / s for s in seconds],
  }


def worker_main(spec: dict) -> None:
  """One worker process: `launch`'s spec of it."""
  if spec["processes"] > 1:
    jax.distributed.initialize(spec["coordinator"], spec["processes"],
                               spec["process_id"])
  figures = time_example(spec["example"], Path(spec["workdir"]), spec["steps"],
                         spec["repeats"])
  Path(spec["out"]).write_text(json.dumps(figures) + "\n")
  if spec["processes"] > 1:
    jax.distributed.shutdown()


def launch(name: str, setting: str, tmp: Path) -> list[dict]:
  """Runs the worker(s) of `setting` ("N" devices or "2x1"); returns each
  process's figures. RuntimeError: a worker failed (its last lines)."""
  processes, devices = (2, 1) if setting == PROCESSES_SETTING else (1, int(setting))
  kept = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                os.environ.get("XLA_FLAGS", "")).split()
  env = dict(os.environ, XLA_FLAGS=" ".join(
      kept + [f"--xla_force_host_platform_device_count={devices}"]),
             TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
  workdir = Path(tempfile.mkdtemp(dir=tmp))
  with socket.socket() as s:  # A free port for the coordinator.
    s.bind(("localhost", 0))
    coordinator = f"localhost:{s.getsockname()[1]}"
  example = EXAMPLES[name]
  specs = [{"example": name, "workdir": str(workdir), "processes": processes,
            "coordinator": coordinator, "process_id": i,
            "out": str(workdir / f"process_{i}.json"),
            "steps": (example.quick_steps_per_epoch if _QUICK.value
                      else example.steps_per_epoch),
            "repeats": 1 if _QUICK.value else _REPEATS.value}
           for i in range(processes)]
  running = [subprocess.Popen(
      [sys.executable, "-m", "benchmarks.scaling", f"--worker={json.dumps(spec)}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for spec in specs]
  try:
    outputs = [p.communicate(timeout=_WORKER_TIMEOUT_S)[0] for p in running]
  finally:
    for p in running:
      p.kill()
  for p, output in zip(running, outputs):
    if p.returncode:
      tail = "\n".join(output.strip().splitlines()[-8:])
      raise RuntimeError(f"exit status {p.returncode}:\n{tail}")
  return [json.loads(Path(spec["out"]).read_text()) for spec in specs]


def run_setting(name: str, setting: str, tmp: Path) -> dict:
  """Times `name` in `setting` (one retry if the workers fail, e.g. the port
  taken meanwhile): process 0's figures, the others' images/s beside them."""
  record = speed_harness.run_info()
  try:
    figures = launch(name, setting, tmp)
  except (RuntimeError, subprocess.TimeoutExpired) as first:
    print(f"  {name} {setting}: failed ({first}); retrying once", file=sys.stderr,
          flush=True)
    figures = launch(name, setting, tmp)
  record.update(figures[0])
  if len(figures) > 1:
    record["other_processes_images_per_s"] = [f["images_per_s"] for f in figures[1:]]
  return speed_harness.finished(record)


def markdown_table(figures: dict) -> str:
  """Rows: examples; columns: settings; cells: images/s (ratio to 1 device)."""
  settings = sorted({s for record in figures["examples"].values()
                     for s in record["settings"]},
                    key=lambda s: (s == PROCESSES_SETTING, int(s.split("x")[0])))
  rows = []
  for record in figures["examples"].values():
    base = record["settings"].get("1", {}).get("images_per_s")
    cells = []
    for setting in settings:
      result = record["settings"].get(setting, {})
      if "images_per_s" in result:
        ratio = f" ({result['images_per_s'] / base:.2f})" if base else ""
        cells.append(f"{result['images_per_s']:,.0f}{ratio}")
      else:
        cells.append("skipped" if "skipped" in result else
                     "failed" if "error" in result else "")
    rows.append([record["title"], str(record["batch_size"]), *cells])
  return harness.markdown(["example", "batch", *(COLUMNS.get(s, f"{s} devices")
                                                 for s in settings)], rows)


def markdown_file(figures: dict, table: str) -> str:
  runs = "\n".join(
      f"- `{run['command']}`: {run['date']} UTC, "
      f"{run.get('wall_s', float('nan')) / 60:.1f} min, load average (1 min) "
      f"{run['load_average_before'][0]:.1f} before, "
      f"{run.get('load_average_after', [float('nan')])[0]:.1f} after"
      f"{' (--quick: a check, not a figure)' if run['quick'] else ''}"
      for run in figures.get("runs", []))
  return (
      "# Data-parallel scaling of the train step on CPU\n\n"
      f"{figures['machine']}, {figures['cpu_count']} cores, JAX "
      f"{figures.get('jax')}. Images/s of `trainer.train`'s steady-state "
      "epochs (random data of the task's shapes) at each config's model and "
      "global batch, best of the timed epochs; in brackets the ratio to 1 "
      "device. The devices are fake CPU devices (and 2 processes) sharing "
      "the same 2 cores: the ratios measure the overhead of the "
      "data-parallel machinery, not a speed-up (see benchmarks/scaling.py). "
      "Per-setting load averages, step counts and each timed epoch's figure "
      "are in scaling_cpu.json.\n\n" + table + "\nRuns (a later run's "
      "figures replace an earlier one's for the examples it covers):\n"
      + runs + "\n")


def output_path() -> Path:
  """--json, else the published figures (a --quick run's go elsewhere)."""
  return harness.output_path(_JSON.value, PUBLISHED, _QUICK.value, QUICK_DIR)


def driver_main() -> None:
  settings = _DEVICES.value + ([PROCESSES_SETTING] if _PROCESSES.value else [])
  json_path = output_path()
  json_path.parent.mkdir(parents=True, exist_ok=True)
  figures = speed_harness.machine_record(json_path)  # Keeps what is not rerun.
  figures.setdefault("examples", {})
  # Each run of this script (a merged file holds several): what it covered.
  run = {**speed_harness.run_info(), "examples": _EXAMPLES.value,
         "settings": settings, "quick": _QUICK.value}
  run["command"] = f"python -m benchmarks.scaling {run['command']}".strip()
  figures.setdefault("runs", []).append(run)
  failed = False
  with tempfile.TemporaryDirectory() as tmp:
    for name in _EXAMPLES.value:
      example, batch_size = EXAMPLES[name], config_of(name).batch_size
      record = figures["examples"].setdefault(name, {"settings": {}})
      record.update(title=example.title, model=example.model, batch_size=batch_size,
                    config=f"train/configs/{name}.py")
      for setting in settings:
        total = 2 if setting == PROCESSES_SETTING else int(setting)
        print(f"{name}: {COLUMNS.get(setting, setting + ' devices')}...", flush=True)
        if batch_size % total:
          result = {"skipped": f"batch_size {batch_size} does not divide by "
                               f"{total} devices"}
          print(f"  skipped: {result['skipped']}", flush=True)
        else:
          try:
            result = run_setting(name, setting, Path(tmp))
            print(f"  {result['images_per_s']:,.1f} images/s "
                  f"({result['ms_per_step']:.2f} ms/step, {result['timed_steps']} "
                  f"steps x {result['timed_epochs']})", flush=True)
          except (RuntimeError, subprocess.TimeoutExpired) as e:
            failed, result = True, {"error": str(e).splitlines()[-1]}
            print(f"  failed: {e}", file=sys.stderr, flush=True)
        record["settings"][setting] = {**result, "command": run["command"]}
        speed_harness.write_json(json_path, figures)  # A later one may fail.
  figures["runs"][-1] = run = speed_harness.finished(run)
  speed_harness.write_json(json_path, figures)
  page = markdown_file(figures, markdown_table(figures))
  json_path.with_suffix(".md").write_text(page)
  print("\n" + page)
  if failed:
    sys.exit("error: some settings failed (see above and the 'error' records)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if _WORKER.value:
    worker_main(json.loads(_WORKER.value))
  else:
    driver_main()


if __name__ == "__main__":
  harness.run(main)
