"""Data-parallel scaling of the generic trainer's train step, per example.

  time python -m benchmarks.scaling   # all five examples: 21 min on 2 cores
  python -m benchmarks.scaling --examples=prob_unet   # one row, merged in
  python -m benchmarks.scaling --examples=bbox --devices=1,8 --processes=false
  python -m benchmarks.scaling --quick --json=/tmp/scaling.json   # a check

For each example at its own config's model and global batch size
(mnist_label: the reference label CVAE, batch 20; mnist_quadrant: the
quadrant CVAE from 1 quadrant, batch 128; segmentation: Sohn et al.'s conv
CVAE, batch 32; prob_unet: the Probabilistic U-Net, batch 32; bbox: the
bounding-box CVAE conditioned on the image, batch 32), the images per second
of `trainer.train` -- the function every entry point calls, with the task's
own `make_model` and loss (`make_loss_fn`, or `per_example_objective` where
the task has no `make_loss_fn`), the config's optimiser, compute dtype,
steps per dispatch and log interval -- on a mesh of
  * 1, 2, 4 and 8 devices of one process (one subprocess per count, with
    XLA_FLAGS=--xla_force_host_platform_device_count=N: the count is fixed
    when JAX starts), and
  * 2 processes x 1 device (`jax.distributed.initialize` on localhost, CPU
    collectives through gloo), as the README's multi-process commands run.
The global batch is the config's in every setting (each device gets
batch / devices images). mnist_label's batch of 20 does not divide by 8, so
its 8-device figure is skipped (the trainer refuses it), not rounded.

What is timed: random arrays of the task's training shapes (built by the
data modules' own canvas / quadrant functions from uniform random "digits",
so no dataset is read), `steps_per_epoch` steps an epoch (a fixed number per
example, see EXAMPLES), 1 + `repeats` epochs. In each epoch the clock starts
at the first log line (after the epoch's first dispatch has finished, read
back to the host) and stops at the end-of-epoch hook (state ready), so a
window holds the epoch's other dispatches, with the trainer's per-dispatch
host work (metrics read back, finiteness check, logging, TensorBoard
scalars) but no compilation, checkpoint or evaluation. Epoch 0 is the
warm-up (compilation, TensorBoard's first write); the figure is the best of
epochs 1..repeats. The only config changes: num_epochs, checkpoints only at
epoch ends (outside the windows), no early stopping (nothing is evaluated).

What the figures mean here: on a 2-core CPU the fake devices (and the two
processes) share the same 2 cores, so more devices bring no more compute;
the ratio to 1 device measures the cost of the data-parallel machinery
(sharded gathers, the gradient all-reduce every step, per-device dispatch,
gloo's TCP between processes) at the configs' small batches, not a
speed-up. A ratio above 1 (the Prob U-Net at 2-4 devices) means one device's
program left a core idle that shards running side by side fill. On a GPU or
TPU host each device brings its own compute.

Writes `--json` (default docs/scaling_cpu.json), keeping the records of
examples and settings not run this time, and prints a Markdown table
(images/s and, in brackets, the ratio to 1 device), also written with its
context to `--markdown` (default docs/scaling_cpu.md).
"""

import dataclasses
import functools
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from absl import app, flags
import numpy as np

_EXAMPLES = flags.DEFINE_string(
    "examples", "mnist_label,mnist_quadrant,segmentation,prob_unet,bbox",
    "Comma-separated examples to time.")
_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"],
                             "Device counts of the one-process settings.")
_PROCESSES = flags.DEFINE_bool("processes", True,
                               "Also time 2 processes x 1 device.")
_QUICK = flags.DEFINE_bool("quick", False,
                           "Short epochs and one timed epoch (--repeats ignored): "
                           "a check, not a figure.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed epochs; the best counts.")
_JSON = flags.DEFINE_string("json", "docs/scaling_cpu.json",
                            "Write the figures here (merged with its records).")
_MARKDOWN = flags.DEFINE_string(
    "markdown", None, "Write the table and its context here (default: the "
    "--json path with .md, e.g. docs/scaling_cpu.md).")
# Internal: a subprocess times one example in one setting.
_WORKER = flags.DEFINE_string("worker", None, "Internal: example to time.")
_WORKER_OUT = flags.DEFINE_string("worker_out", None, "Internal: result file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Internal: trainer workdir.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Internal.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Internal.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Internal.")

REPO = Path(__file__).resolve().parents[1]
PROCESSES_SETTING = "2x1"  # 2 processes x 1 device.
_WORKER_TIMEOUT_S = 1800


# Training arrays and the trainer's init_fn / loss_fn, per example, from the
# task modules (imported in the worker, after XLA_FLAGS is set).

def _label(config, n, rng):
  from cvae_jax import objectives  # pylint: disable=g-import-not-at-top
  from cvae_jax.tasks import mnist_label  # pylint: disable=g-import-not-at-top
  model = mnist_label.make_model(config)
  arrays = {"target": rng.random((n, 784), np.float32),
            "condition": rng.integers(0, 10, n).astype(np.int32)}
  init_fn = lambda key: model.init(key, arrays["target"][:1],
                                   arrays["condition"][:1])
  # The task's loss_fn (tasks/mnist_label.py).
  return init_fn, functools.partial(objectives.summed_negative_elbo_loss,
                                    model), arrays


def _from_spec(task_module, config, arrays):
  """(init_fn, loss_fn, arrays) from a task's `runner.Task` spec, as the
  runner builds them."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  task = task_module.TASK
  model = task.make_model(config)
  example = task.make_init_batch(config, {k: jnp.asarray(v[:1])
                                          for k, v in arrays.items()})
  if task.is_cvae(config):
    init_fn = lambda key: model.init(key, example["target"], example["condition"])
  else:
    init_fn = lambda key: model.init(key, example["condition"])
  return init_fn, task.make_loss_fn(config, model), arrays


def _quadrant(config, n, rng):
  # pylint: disable=g-import-not-at-top
  from cvae_jax.data import quadrants
  from cvae_jax.tasks import mnist_quadrant
  # The CVAE's step (after the pretrained baseline: its parameters are in the
  # state, frozen by stop_gradient).
  return _from_spec(mnist_quadrant, config, quadrants.split_by_quadrants(
      rng.random((n, 784), np.float32), config.num_quadrants,
      config.quadrant_order))


def _segmentation(config, n, rng):
  # pylint: disable=g-import-not-at-top
  from cvae_jax.data import mnist_segmentation
  from cvae_jax.tasks import segmentation
  canvases = mnist_segmentation.draw_canvases(
      rng.random((n, 28, 28), np.float32), segmentation.canvas_spec(config), rng)
  return _from_spec(segmentation, config, {k: canvases[k] for k in ("image", "masks")})


def _prob_unet(config, n, rng):
  # pylint: disable=g-import-not-at-top
  from cvae_jax.data import mnist_ambiguous
  from cvae_jax.tasks import prob_unet
  canvases = mnist_ambiguous.draw_ambiguous_set(
      rng.random((n, 28, 28), np.float32), rng.random((n, 28, 28), np.float32),
      prob_unet.ambiguity_spec(config), rng)
  return _from_spec(prob_unet, config, {k: canvases[k] for k in ("image", "masks")})


def _bbox(config, n, rng):
  # pylint: disable=g-import-not-at-top
  from cvae_jax.data import mnist_boxes
  from cvae_jax.tasks import bbox
  digits = config.data.max_digits * n  # Enough for n canvases of 2-4 digits.
  canvases = mnist_boxes.draw_canvases(
      rng.random((digits, 28, 28), np.float32),
      rng.integers(0, 10, digits).astype(np.int32), bbox.canvas_spec(config), rng)
  return _from_spec(bbox, config, {k: v[:n] for k, v in canvases.items()})


@dataclasses.dataclass(frozen=True)
class Example:
  """One example: its config, its trainer pieces, and the epoch length.

  steps_per_epoch: steps of each (random-data) epoch, a multiple of the
    config's dispatch length; the timed window is the epoch less its first
    dispatch, a few seconds on 2 cores with 1 device.
  """
  title: str
  config_module: str
  model: str
  build: Callable
  steps_per_epoch: int
  quick_steps_per_epoch: int


EXAMPLES = {
    # Step times on 2 cores with 1 device: ~0.5, 14, 45, 220 and 18 ms
    # (docs/scaling_cpu.json); 2 processes x 1 device take up to ~26x longer
    # (mnist_label: gloo's all-reduce every step), which bounds the epochs.
    # 2000 steps of batch 20 (MNIST's epoch is 3000), 100-step dispatches.
    "mnist_label": Example("label CVAE", "mnist_label", "label_cvae", _label,
                           2000, 300),
    # 260 steps of batch 128 (the config's epoch is 390), 130-step dispatches.
    "mnist_quadrant": Example("quadrant CVAE (1 quadrant)", "mnist_quadrant",
                              "cvae", _quadrant, 260, 260),
    # Conv nets: one step per dispatch (steps_per_dispatch=1 in their configs).
    "segmentation": Example("Sohn segmentation CVAE", "segmentation", "cvae",
                            _segmentation, 51, 3),
    "prob_unet": Example("Probabilistic U-Net", "prob_unet", "prob_unet",
                         _prob_unet, 13, 3),
    "bbox": Example("bounding-box CVAE (image)", "bbox", "cvae", _bbox, 81, 3),
}


def _config(name: str):
  import importlib  # pylint: disable=g-import-not-at-top
  example = EXAMPLES[name]
  config = importlib.import_module(f"train.configs.{example.config_module}").get_config()
  if "model" in config and isinstance(config.model, str):
    config.model = example.model
  return config


# ---------------------------------------------------------------- the worker

def _time_example(name: str, workdir: Path, quick: bool, repeats: int) -> dict:
  """Runs trainer.train on random data; returns this process's figures."""
  # pylint: disable=g-import-not-at-top
  import jax
  from cvae_jax.training import InMemoryData, trainer
  example = EXAMPLES[name]
  config = _config(name)
  steps_per_epoch = (example.quick_steps_per_epoch if quick
                     else example.steps_per_epoch)
  config.num_epochs = 1 + repeats
  config.checkpoint_every_steps = 10**9  # Saves only at epoch ends.
  config.early_stopping_metric = ""  # Nothing is evaluated.
  batch_size = config.batch_size
  rng = np.random.default_rng(0)
  init_fn, loss_fn, arrays = example.build(config, steps_per_epoch * batch_size, rng)
  # The steps of an epoch's first dispatch, which ends at its first log line.
  first_dispatch = trainer.dispatch_end(config, 0, steps_per_epoch)
  timed_steps = steps_per_epoch - first_dispatch
  starts, ends = {}, {}
  begin = time.perf_counter()

  def report(progress, metrics):
    del metrics  # Read back by the trainer: the dispatch is done.
    if progress.step_in_epoch == 0:
      starts[progress.epoch] = time.perf_counter()

  def stopwatch(state, epoch):
    jax.block_until_ready(state.params)
    ends[epoch] = time.perf_counter()
    return {}

  trainer.train(config, workdir, init_fn, loss_fn, InMemoryData(arrays),
                evaluate=stopwatch, report=report,
                report_eval=lambda epoch, metrics: None)
  seconds = [ends[e] - starts[e] for e in range(1, 1 + repeats)]
  best = min(seconds)
  return {
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
      "process_count": jax.process_count(),
      "batch_size": batch_size,
      "per_device_batch": batch_size // jax.device_count(),
      "steps_per_dispatch": first_dispatch,
      "steps_per_epoch": steps_per_epoch,
      "timed_steps": timed_steps,
      "timed_epochs": repeats,
      "window_s": seconds,
      "warm_up_epoch_s": ends[0] - begin,
      "images_per_s": timed_steps * batch_size / best,
      "ms_per_step": 1e3 * best / timed_steps,
      "all_images_per_s": [timed_steps * batch_size / s for s in seconds],
  }


def _worker_main() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if _COORDINATOR.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  figures = _time_example(_WORKER.value, Path(_WORKDIR.value), _QUICK.value,
                          _repeats())
  Path(_WORKER_OUT.value).write_text(json.dumps(figures) + "\n")
  if _COORDINATOR.value:
    jax.distributed.shutdown()


# ---------------------------------------------------------------- the driver

def _repeats() -> int:
  """Timed epochs: --repeats, or 1 with --quick."""
  return 1 if _QUICK.value else _REPEATS.value


def _xla_flags(devices: int) -> str:
  """The caller's XLA_FLAGS without a device count, plus `devices` devices."""
  kept = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                os.environ.get("XLA_FLAGS", "")).split()
  return " ".join(kept + [f"--xla_force_host_platform_device_count={devices}"])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(name: str, devices: int, processes: int, tmp: Path) -> list[dict]:
  """Runs the worker(s) of one setting; returns each process's figures.

  Raises:
    RuntimeError: a worker failed (its last output lines in the message).
  """
  env = dict(os.environ, XLA_FLAGS=_xla_flags(devices),
             TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
  workdir = Path(tempfile.mkdtemp(dir=tmp))
  command = [sys.executable, "-m", "benchmarks.scaling", f"--worker={name}",
             f"--workdir={workdir}", f"--repeats={_repeats()}",
             f"--quick={_QUICK.value}"]
  if processes > 1:
    command += [f"--coordinator_address=localhost:{_free_port()}",
                f"--num_processes={processes}"]
  outs = [workdir / f"process_{i}.json" for i in range(processes)]
  running = [subprocess.Popen(
      command + [f"--worker_out={out}"]
      + ([f"--process_id={i}"] if processes > 1 else []),
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i, out in enumerate(outs)]
  try:
    outputs = [p.communicate(timeout=_WORKER_TIMEOUT_S)[0] for p in running]
  finally:
    for p in running:
      p.kill()
  for p, output in zip(running, outputs):
    if p.returncode:
      tail = "\n".join(output.strip().splitlines()[-8:])
      raise RuntimeError(f"exit status {p.returncode}:\n{tail}")
  return [json.loads(out.read_text()) for out in outs]


def _run_setting(name: str, setting: str, tmp: Path) -> dict:
  """Times `name` in `setting` ("N" devices or "2x1"); one retry if the
  workers fail (e.g. the coordinator's port taken meanwhile)."""
  processes, devices = (2, 1) if setting == PROCESSES_SETTING else (1, int(setting))
  record = {"date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_before": os.getloadavg()}
  start = time.time()
  try:
    figures = _launch(name, devices, processes, tmp)
  except (RuntimeError, subprocess.TimeoutExpired) as first:
    print(f"  {name} {setting}: failed ({first}); retrying once", file=sys.stderr,
          flush=True)
    figures = _launch(name, devices, processes, tmp)
  record.update(figures[0])  # Process 0's clock; the others' beside it.
  if processes > 1:
    record["other_processes_images_per_s"] = [f["images_per_s"] for f in figures[1:]]
  record.update(load_average_after=os.getloadavg(), wall_s=time.time() - start)
  return record


def _setting_names(devices: list[int]) -> list[str]:
  return [str(d) for d in devices] + ([PROCESSES_SETTING] if _PROCESSES.value else [])


COLUMNS = {"1": "1 device", "2": "2 devices", "4": "4 devices", "8": "8 devices",
           PROCESSES_SETTING: "2 processes x 1"}


def markdown_table(figures: dict) -> str:
  """Rows: examples; columns: settings; cells: images/s (ratio to 1 device)."""
  settings = sorted({s for record in figures["examples"].values()
                     for s in record["settings"]},
                    key=lambda s: (s == PROCESSES_SETTING, int(s.split("x")[0])))
  lines = ["| example | batch | " + " | ".join(COLUMNS.get(s, f"{s} devices")
                                             for s in settings) + " |",
           "| --- | ---: |" + " ---: |" * len(settings)]
  for name, record in figures["examples"].items():
    base = record["settings"].get("1", {}).get("images_per_s")
    cells = []
    for setting in settings:
      result = record["settings"].get(setting)
      if result is None:
        cells.append("")
      elif "skipped" in result or "error" in result:
        cells.append("skipped" if "skipped" in result else "failed")
      else:
        ratio = f" ({result['images_per_s'] / base:.2f})" if base else ""
        cells.append(f"{result['images_per_s']:,.0f}{ratio}")
    lines.append(f"| {record['title']} | {record['batch_size']} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines)


def _cpu_model() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _parse_examples() -> list[str]:
  names = [n.strip() for n in _EXAMPLES.value.split(",") if n.strip()]
  unknown = [n for n in names if n not in EXAMPLES]
  if unknown or not names:
    sys.exit(f"error: unknown example {', '.join(map(repr, unknown)) or '(none)'} "
             f"in --examples; choose from {', '.join(EXAMPLES)}")
  return names


def _parse_devices() -> list[int]:
  try:
    devices = [int(d) for d in _DEVICES.value]
  except ValueError:
    devices = []
  if not devices or min(devices) < 1:
    sys.exit(f"error: --devices={','.join(_DEVICES.value)} must be positive "
             "device counts, e.g. --devices=1,2,4,8")
  return devices


def _driver_main() -> None:
  names, devices = _parse_examples(), _parse_devices()
  if _REPEATS.value < 1:
    sys.exit(f"error: --repeats={_REPEATS.value} must be at least 1")
  command = "python -m benchmarks.scaling " + " ".join(sys.argv[1:])
  json_path = Path(_JSON.value)
  figures = {"examples": {}}
  if json_path.exists():
    figures = json.loads(json_path.read_text())  # Keeps what is not rerun.
  start = time.time()
  figures.update(cpu_count=os.cpu_count(), cpu_model=_cpu_model(),
                 jax=_jax_version())
  # Each run of this script (a merged file holds several): what it covered.
  run = {"command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M"),
         "examples": names, "settings": _setting_names(devices),
         "quick": _QUICK.value, "load_average_before": os.getloadavg()}
  figures.setdefault("runs", []).append(run)
  failed = False
  with tempfile.TemporaryDirectory() as tmp:
    for name in names:
      example = EXAMPLES[name]
      config = _config(name)
      record = figures["examples"].setdefault(name, {"settings": {}})
      record.update(title=example.title,
                    config=f"train/configs/{example.config_module}.py",
                    model=example.model, batch_size=config.batch_size)
      for setting in _setting_names(devices):
        total = 2 if setting == PROCESSES_SETTING else int(setting)
        print(f"{name}: {COLUMNS.get(setting, setting + ' devices')}...",
              flush=True)
        if config.batch_size % total:
          record["settings"][setting] = {
              "skipped": f"batch_size {config.batch_size} does not divide by "
                         f"{total} devices"}
          print(f"  skipped: {record['settings'][setting]['skipped']}", flush=True)
          continue
        try:
          result = _run_setting(name, setting, Path(tmp))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
          failed = True
          result = {"error": str(e).splitlines()[-1]}
          print(f"  failed: {e}", file=sys.stderr, flush=True)
        else:
          print(f"  {result['images_per_s']:,.1f} images/s "
                f"({result['ms_per_step']:.2f} ms/step, {result['timed_steps']} "
                f"steps x {result['timed_epochs']}; load "
                f"{result['load_average_before'][0]:.1f} -> "
                f"{result['load_average_after'][0]:.1f})", flush=True)
        result["command"] = command.strip()
        record["settings"][setting] = result
        _write(figures, json_path)  # After each: a later one may be interrupted.
  run.update(load_average_after=os.getloadavg(), wall_s=time.time() - start)
  _write(figures, json_path)
  table = markdown_table(figures)
  print(f"\nimages/s of the train step (ratio to 1 device); {_cpu_model()}, "
        f"{os.cpu_count()} cores, fake CPU devices; load average "
        f"{run['load_average_before'][0]:.1f} -> "
        f"{run['load_average_after'][0]:.1f}; {run['wall_s'] / 60:.1f} min\n")
  print(table)
  Path(_MARKDOWN.value or json_path.with_suffix(".md")).write_text(
      _markdown_file(figures, table))
  if failed:
    sys.exit("error: some settings failed (see above and the 'error' records)")


def _jax_version() -> str:
  import jax  # pylint: disable=g-import-not-at-top; importing starts no backend.
  return jax.__version__


def _markdown_file(figures: dict, table: str) -> str:
  runs = "\n".join(
      f"- `{run['command']}`: {run['date']} UTC, "
      f"{run.get('wall_s', float('nan')) / 60:.1f} min, load average (1 min) "
      f"{run['load_average_before'][0]:.1f} before, "
      f"{run.get('load_average_after', [float('nan')])[0]:.1f} after"
      f"{' (--quick: a check, not a figure)' if run['quick'] else ''}"
      for run in figures.get("runs", []))
  return (
      "# Data-parallel scaling of the train step on CPU\n\n"
      f"{figures['cpu_model']}, {figures['cpu_count']} cores, JAX "
      f"{figures.get('jax')}. Images/s of `trainer.train`'s steady-state "
      "epochs (random data of the task's shapes) at each config's model and "
      "global batch, best of the timed epochs; in brackets the ratio to 1 "
      "device. The devices are fake CPU devices (and 2 processes) sharing "
      "the same 2 cores: the ratios measure the overhead of the "
      "data-parallel machinery, not a speed-up (see benchmarks/scaling.py). "
      "Per-setting load averages, step counts and each timed epoch's figure "
      "are in scaling_cpu.json.\n\n" + table + "\n\nRuns (a later run's "
      "figures replace an earlier one's for the examples it covers):\n"
      + runs + "\n")


def _write(figures: dict, path: Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(figures, indent=2) + "\n")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if _WORKER.value:
    if _WORKER.value not in EXAMPLES:
      sys.exit(f"error: unknown example {_WORKER.value!r}; choose from "
               f"{', '.join(EXAMPLES)}")
    _worker_main()
  else:
    _driver_main()


if __name__ == "__main__":
  app.run(main)
