"""What the training loop does around its steps, one hook each.

`trainer.train` runs dispatches of steps and, at fixed points, calls every
hook it was given (its own, then the caller's `hooks`):

  begin(state, resumed)                   once, after the state is restored;
  after_steps(steps, metrics)             after each dispatch: the `Progress`
                                          of each of its steps and their
                                          metrics {name: [num_steps]};
  after_epoch(state, epoch, metrics)      after each epoch's evaluation;
  should_stop(step)                       before each dispatch: True ends
                                          training (early stopping);
  end(state) -> state                     once, when training ended normally
                                          (early stopping returns the best);
  close()                                 always, last.

A hook overrides the methods it needs. The trainer's own: `RunIdentity`
(refuses to resume checkpoints made with other settings), `RunHistory`
(records the settings of each training segment), `LogLines` (the log lines
and the progress bar), `MetricWriter` (TensorBoard scalars),
`EarlyStopping` and `StopSignals` (SIGINT / SIGTERM become a checkpoint and
`Interrupted`).
"""

import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

import tqdm

from cvae_jax import configs, sharding
from cvae_jax.errors import ConfigError, SecondSignal
from cvae_jax.training import tensorboard
from cvae_jax.training.checkpointing import Checkpointer
from cvae_jax.training.state import TrainState


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where a logged step is: step `step_in_epoch` of epoch `epoch` (from 0)."""
  step: int
  epoch: int
  step_in_epoch: int
  steps_per_epoch: int
  batch_size: int
  num_examples: int


class _LogWindow:
  """The (Progress, {metric: value}) of the steps on a log boundary (every
  `every`-th step of an epoch, from its first): with mode "mean" each metric
  averaged over the steps since the previous boundary (this one included),
  with "last" the boundary step's own."""

  def __init__(self, every: int, mode: str = "mean"):
    self._every, self._mode = every, mode
    self._sums, self._count = {}, 0

  def logged(self, steps: list[Progress], metrics: dict) -> list[tuple[Progress, dict]]:
    out = []
    for i, progress in enumerate(steps):
      logged = progress.step_in_epoch % self._every == 0
      if self._mode == "last":  # Only the logged steps' values are read.
        if logged:
          out.append((progress, {k: float(v[i]) for k, v in metrics.items()}))
        continue
      self._sums = {k: self._sums.get(k, 0.0) + float(v[i])
                    for k, v in metrics.items()}
      self._count += 1
      if logged:
        out.append((progress, {k: v / self._count for k, v in self._sums.items()}))
        self._sums, self._count = {}, 0
    return out


class Hook:
  """Does nothing at every point of the loop; subclasses override some."""

  def begin(self, state: TrainState, resumed: bool) -> None:
    del state, resumed

  def after_steps(self, steps: list[Progress], metrics: dict) -> None:
    del steps, metrics

  def after_epoch(self, state: TrainState, epoch: int, metrics: dict) -> None:
    del state, epoch, metrics

  def should_stop(self, step: int) -> bool:
    del step
    return False

  def end(self, state: TrainState) -> TrainState:
    return state

  def close(self) -> None:
    pass


class RunIdentity(Hook):
  """A step means a data position only for the same batch size, seed and
  epoch size, the optimiser state restores only into the same structure
  (optimizer, scheduled or not, clipping or not), and the task may name more
  settings its checkpoints depend on: refuses to resume checkpoints made with
  others (workdir/run_identity.json). A key the saved identity lacks (written
  by an earlier version) is not compared."""

  def __init__(self, workdir: Path, identity: dict):
    self._workdir = workdir
    self._identity = json.loads(json.dumps(identity))  # Tuples as saved lists.

  def check(self) -> None:
    """ConfigError if the saved identity differs; the trainer calls it
    before restoring, so checkpoints of other settings are never touched."""
    path = self._workdir / "run_identity.json"
    if path.exists():
      saved = json.loads(path.read_text())
      changed = {k: (saved[k], v) for k, v in self._identity.items()
                 if k in saved and saved[k] != v}
      if changed:
        details = ", ".join(f"{k} {old} -> {new}"
                            for k, (old, new) in changed.items())
        raise ConfigError(f"{self._workdir} holds a run with other settings "
                          f"({details}); pass a new --workdir or the original values")

  def begin(self, state, resumed):
    path = self._workdir / "run_identity.json"
    if resumed:
      self.check()
    self._workdir.mkdir(parents=True, exist_ok=True)
    if sharding.is_main_process():
      path.write_text(json.dumps(self._identity) + "\n")


class RunHistory(Hook):
  """workdir/run_history.json: one segment per invocation that trained, with
  its first and last step and its settings (the config's, `eval` and
  `evals` aside): all of them for the first segment, then only those that
  changed, as [before, after]. A resume with another learning rate, schedule
  or number of epochs is accepted and recorded here (and in results.json's
  "history"); what the checkpoints cannot take is refused by `RunIdentity`."""

  FILE = "run_history.json"
  CONFIG_FILE = "config.json"  # The latest segment's whole config.

  def __init__(self, workdir: Path, config):
    self._path = workdir / self.FILE
    self._config = json.loads(json.dumps(config.to_dict(), default=str))
    self._settings = configs.flatten({k: v for k, v in self._config.items()
                                      if k not in ("eval", "evals")})
    self._start = self._step = None
    self._segments = []

  def begin(self, state, resumed):
    if resumed and self._path.exists():
      self._segments = json.loads(self._path.read_text())
    self._start = self._step = int(state.step)
    if sharding.is_main_process():  # What runner.restore reads mid-run.
      self._path.parent.mkdir(parents=True, exist_ok=True)
      (self._path.parent / self.CONFIG_FILE).write_text(
          json.dumps(self._config, indent=1) + "\n")

  def after_steps(self, steps, metrics):
    self._step = steps[-1].step + 1

  def _current_settings(self) -> dict:
    current = {}
    for segment in self._segments:
      current.update(segment.get("settings", {}))
      current.update({k: new for k, (_, new) in segment.get("changed", {}).items()})
    return current

  def close(self):
    if self._start is None or self._step == self._start:
      return  # Nothing trained: nothing to record.
    segment = {"from_step": self._start, "to_step": self._step}
    if not self._segments:
      segment["settings"] = self._settings
    else:
      before = self._current_settings()
      segment["changed"] = {k: [before.get(k), v] for k, v in self._settings.items()
                            if before.get(k) != v}
    self._segments.append(segment)
    if sharding.is_main_process():
      self._path.parent.mkdir(parents=True, exist_ok=True)
      self._path.write_text(json.dumps(self._segments, indent=1) + "\n")


def read_history(workdir: Path) -> list:
  """The segments RunHistory wrote in workdir ([] when none)."""
  path = Path(workdir) / RunHistory.FILE
  return json.loads(path.read_text()) if path.exists() else []


def steps_trained(history: list, step: int) -> int:
  """All steps a run trained: the last segment's end in `history`
  (`read_history`), at least `step` (e.g. the evaluated state's, which early
  stopping may have taken from an earlier epoch)."""
  return max([int(step)] + [s["to_step"] for s in history])


class LogLines(Hook):
  """Prints `report(progress, metrics)` every `log_every` steps (the
  metrics' mean since the previous line, or with `mode` "last" that step's)
  and `report_eval(epoch, metrics)` after each evaluation (a None line
  prints nothing), above a progress bar on a terminal; process 0 only."""

  def __init__(self, report: Callable, report_eval: Callable, log_every: int,
               total_steps: int, mode: str = "mean"):
    self._report, self._report_eval = report, report_eval
    self._window = _LogWindow(log_every, mode)
    self._total = total_steps
    self._bar = None

  def begin(self, state, resumed):
    self._bar = tqdm.tqdm(total=self._total, initial=int(state.step), unit="step",
                          disable=not (sys.stdout.isatty()
                                       and sharding.is_main_process()),
                          dynamic_ncols=True)

  def print(self, line: str) -> None:
    """`line` above the progress bar, flushed: it shows at once also when
    stdout is a pipe or a file (e.g. under `| tee` or a scheduler)."""
    if not sharding.is_main_process():
      return
    if self._bar is None:
      print(line, flush=True)
      return
    self._bar.write(line)
    sys.stdout.flush()

  def after_steps(self, steps, metrics):
    for progress, values in self._window.logged(steps, metrics):
      line = self._report(progress, values)
      if line is not None:
        self.print(line)
    self._bar.update(len(steps))

  def after_epoch(self, state, epoch, metrics):
    line = self._report_eval(epoch, metrics)
    if line is not None:
      self.print(line)

  def close(self):
    if self._bar is not None:
      self._bar.close()


class MetricWriter(Hook):
  """TensorBoard scalars in `workdir`: train/<metric> every `log_every`
  steps (averaged as the log lines are), eval/<metric> after each epoch;
  written without TensorFlow (`training.tensorboard`). The event file only
  comes at the first write, so a run resumed at its end adds no empty one."""

  def __init__(self, workdir: Path, log_every: int, mode: str = "mean"):
    self._workdir, self._writer = workdir, None
    self._window = _LogWindow(log_every, mode)

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    if not sharding.is_main_process():
      return
    if self._writer is None:
      self._writer = tensorboard.ScalarWriter(self._workdir)
    self._writer.write_scalars(step, scalars)

  def after_steps(self, steps, metrics):
    for progress, values in self._window.logged(steps, metrics):
      self.write_scalars(progress.step, {f"train/{k}": v for k, v in values.items()})

  def after_epoch(self, state, epoch, metrics):
    self.write_scalars(int(state.step), {f"eval/{k}": v for k, v in metrics.items()})

  def close(self):
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()


class EarlyStopping(Hook):
  """Keeps the state of the epoch with the lowest `metric` in workdir/best;
  stops when it has not improved for `patience` epochs; `end` returns the
  best state.

  The best state is saved before the epoch's regular checkpoint, so after a
  kill the record never lags the checkpoint a run resumes from.
  """

  def __init__(self, workdir: Path, metric: str, patience: int,
               steps_per_epoch: int, total_steps: int,
               log: Callable[[str], None] = print):
    self.metric, self.patience = metric, patience
    self._steps_per_epoch, self._total, self._log = steps_per_epoch, total_steps, log
    self._checkpointer = Checkpointer(workdir / "best", max_to_keep=1)
    self._record_path = workdir / "best" / "record.json"
    self.record = (json.loads(self._record_path.read_text())
                   if self._record_path.exists() else None)

  def after_epoch(self, state, epoch, metrics):
    if self.metric not in metrics:
      raise ConfigError(f"early_stopping_metric {self.metric!r} is not one of "
                        f"the evaluated metrics {sorted(metrics)}; set "
                        "--config.early_stopping_metric")
    value = float(metrics[self.metric])
    if self.record is None or value < self.record["value"]:
      self._checkpointer.save(state)
      self.record = {"epoch": epoch, "step": int(state.step), "value": value,
                     "metric": self.metric}
      if sharding.is_main_process():
        self._record_path.write_text(json.dumps(self.record) + "\n")

  def should_stop(self, step):
    completed_epochs, within = divmod(step, self._steps_per_epoch)
    return (within == 0 and self.record is not None
            and completed_epochs - 1 - self.record["epoch"] >= self.patience)

  def end(self, state):
    if self.record is None:
      return state
    step = int(state.step)
    if self.should_stop(step) and step < self._total:
      self._log(f"early stopping after epoch {step // self._steps_per_epoch - 1}: "
                f"{self.metric} has not improved for {self.patience} epochs")
    self._log(f"best epoch {self.record['epoch']}: {self.metric}="
              f"{self.record['value']:.6g}; returning its parameters")
    restored = self._checkpointer.restore_latest(state)
    if restored is None:
      raise ConfigError(f"{self._checkpointer.directory} has no readable best "
                        "checkpoint; pass a new --workdir to train again")
    return restored

  def close(self):
    self._checkpointer.close()


class StopSignals(Hook):
  """Turns the first SIGINT or SIGTERM (e.g. a pre-empted VM) into a flag the
  loop checks after each dispatch (it saves a checkpoint, then raises
  `Interrupted`); a second one raises SecondSignal, a KeyboardInterrupt.
  `signum` is the first signal's number. Handlers are installed by `begin`
  (on the main thread only) and restored by `close`."""

  _SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum = None
    self._previous = {}

  @property
  def raised(self) -> bool:
    return self.signum is not None

  def begin(self, state, resumed):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self._SIGNALS}

  def _handle(self, signum, frame):
    if self.raised:  # The second one: stop without saving.
      raise SecondSignal(signum)
    self.signum = signum
    print(f"\n{signal.Signals(signum).name}: saving a checkpoint when the "
          "current dispatch of steps ends (again: stop without saving)",
          file=sys.stderr, flush=True)

  def close(self):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
