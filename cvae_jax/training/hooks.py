"""What the training loop does around its steps, one hook each.

`trainer.train` runs dispatches of steps and, at fixed points, calls every
hook the caller passed (then its own `StopSignals`), in order, by these
methods only:

  start(run)                            once, before any checkpoint is read:
                                        the `Run` (config, workdir, sizes,
                                        the trainer's run identity); raising
                                        here touches no checkpoint;
  begin(state, resumed)                 once, after the state is restored;
  message(line)                         the loop's own news (a resume, a
                                        compilation), to show or not;
  should_stop(step) -> bool             before each dispatch: True ends
                                        training normally (early stopping);
  after_steps(steps, metrics)           after each dispatch: the `Progress`
                                        of each of its steps and their
                                        metrics {name: [num_steps]};
  evaluate(state, epoch) -> dict|None   after each epoch: a hook that
                                        evaluates returns {name: float};
  after_epoch(state, epoch, metrics)    then, when some hook evaluated, with
                                        every evaluating hook's metrics;
  wants_checkpoint(step) -> bool        after each dispatch: True saves a
                                        checkpoint beside the regular ones;
  after_checkpoint(step, directory)     after each checkpoint is saved;
                                        raising ends the run (`StopSignals`
                                        raises `Interrupted` here);
  end(state) -> state                   once, when training ended normally
                                        (early stopping returns the best);
  close()                               always, last, in reverse order.

A hook overrides the methods it needs; `start` sets it up for a run, so
one object may serve several runs in turn. The library's: `RunIdentity`
(refuses to resume checkpoints made with other settings), `RunHistory`
(records the settings of each training segment), `EpochEvaluation` (runs
the task's evaluation after each epoch), `LogLines` (the log lines and the
progress bar), `MetricWriter` (TensorBoard scalars), `EarlyStopping`, and
`StopSignals` (SIGINT / SIGTERM become a checkpoint and `Interrupted`; the
trainer always adds it). `standard(config, ...)` is the list a training
command passes; hooks=() trains with no files but the checkpoints and
prints nothing.
"""

import dataclasses
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import ml_collections
import tqdm

from cvae_jax import configs, sharding
from cvae_jax.errors import ConfigError, Interrupted, SecondSignal
from cvae_jax.training import tensorboard
from cvae_jax.training.checkpointing import Checkpointer
from cvae_jax.training.state import TrainState

__all__ = ["Hook", "Progress", "Run", "standard", "RunIdentity", "RunHistory",
           "read_history", "steps_trained", "EpochEvaluation", "LogLines",
           "default_report", "default_report_eval", "MetricWriter", "EarlyStopping",
           "StopSignals"]


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where a logged step is: step `step_in_epoch` of epoch `epoch` (from 0)."""
  step: int
  epoch: int
  step_in_epoch: int
  steps_per_epoch: int
  batch_size: int
  num_examples: int


@dataclasses.dataclass(frozen=True)
class Run:
  """What the trainer tells every hook before it reads a checkpoint.

  `identity` holds the trainer's settings its checkpoints depend on (batch
  size, seed, number of examples, the optimiser's structure); `workdir` is
  absolute; `latest_checkpoint` is the newest saved step (None: a new run).
  """
  config: ml_collections.ConfigDict
  workdir: Path
  steps_per_epoch: int
  total_steps: int
  num_examples: int
  identity: dict
  latest_checkpoint: int | None


class _LogWindow:
  """The (Progress, {metric: value}) of the steps on a log boundary (every
  `every`-th step of an epoch, from its first): with mode "mean" each metric
  averaged over the steps since the previous boundary (this one included),
  with "last" the boundary step's own."""

  def __init__(self, every: int, mode: str = "mean"):
    self._every, self._mode = every, mode
    self._sums, self._count = {}, 0

  @classmethod
  def of(cls, run: Run) -> "_LogWindow":
    """The window of the run's log_every_steps and log_metrics."""
    return cls(run.config.log_every_steps, run.config.get("log_metrics", "mean"))

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

  def start(self, run: Run) -> None:
    """Once, before any checkpoint is read; raising here touches none."""
    del run

  def begin(self, state: TrainState, resumed: bool) -> None:
    """Once, after the state is restored (`resumed`) or initialised."""
    del state, resumed

  def message(self, line: str) -> None:
    """The loop's own news (a resume, a compilation), to show or not."""
    del line

  def should_stop(self, step: int) -> bool:
    """Before each dispatch: True ends training normally."""
    del step
    return False

  def after_steps(self, steps: list[Progress], metrics: dict) -> None:
    """After each dispatch: each step's `Progress`, metrics {name: [num_steps]}."""
    del steps, metrics

  def evaluate(self, state: TrainState, epoch: int) -> dict[str, float] | None:
    """After each epoch: {name: float} from a hook that evaluates, else None."""
    del state, epoch
    return None

  def after_epoch(self, state: TrainState, epoch: int, metrics: dict) -> None:
    """After an epoch some hook evaluated: every evaluating hook's metrics."""
    del state, epoch, metrics

  def wants_checkpoint(self, step: int) -> bool:
    """After each dispatch: True saves a checkpoint beside the regular ones."""
    del step
    return False

  def after_checkpoint(self, step: int, directory: Path) -> None:
    """After each checkpoint is saved; raising ends the run."""
    del step, directory

  def end(self, state: TrainState) -> TrainState:
    """Once, when training ended normally: the state to return."""
    return state

  def close(self) -> None:
    """Always, last (the hooks in reverse order)."""


class RunIdentity(Hook):
  """A step means a data position only for the same batch size, seed and
  epoch size, the optimiser state restores only into the same structure
  (optimizer, scheduled or not, clipping or not: the trainer's `Run.identity`),
  and the task may name more settings its checkpoints depend on (`identity`,
  JSON-able, e.g. which pixels are the input): refuses to resume checkpoints
  made with others (workdir/run_identity.json). A key the saved identity
  lacks (written by an earlier version) is not compared."""

  FILE = "run_identity.json"

  def __init__(self, identity: dict | None = None):
    self._task_identity = dict(identity or {})
    self._identity, self._workdir = None, None

  def start(self, run):
    # Tuples as the saved lists.
    self._identity = json.loads(json.dumps({**self._task_identity, **run.identity}))
    self._workdir = run.workdir
    if run.latest_checkpoint is not None:
      self._check()  # Before restoring: other settings touch nothing.

  def _check(self) -> None:
    """ConfigError if the saved identity differs."""
    path = self._workdir / self.FILE
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
    self._workdir.mkdir(parents=True, exist_ok=True)
    if sharding.is_main_process():
      (self._workdir / self.FILE).write_text(json.dumps(self._identity) + "\n")


class RunHistory(Hook):
  """workdir/run_history.json: one segment per invocation that trained, with
  its first and last step, its wall seconds and its settings (the config's, `eval` and
  `evals` aside): all of them for the first segment, then only those that
  changed, as [before, after]. A resume with another learning rate, schedule
  or number of epochs is accepted and recorded here (and in results.json's
  "history"); what the checkpoints cannot take is refused by `RunIdentity`."""

  FILE = "run_history.json"
  CONFIG_FILE = "config.json"  # The latest segment's whole config.

  def __init__(self):
    self._path = self._config = self._settings = None
    self._start = self._step = self._began = None
    self._segments = []

  def start(self, run):
    self._path = run.workdir / self.FILE
    self._config = json.loads(json.dumps(run.config.to_dict(), default=str))
    self._settings = configs.flatten({k: v for k, v in self._config.items()
                                      if k not in ("eval", "evals")})
    self._start = self._step = None

  def begin(self, state, resumed):
    self._segments = (json.loads(self._path.read_text())
                      if resumed and self._path.exists() else [])
    self._start = self._step = int(state.step)
    self._began = time.time()
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
    segment = {"from_step": self._start, "to_step": self._step,
               "seconds": round(time.time() - self._began, 1)}
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


class EpochEvaluation(Hook):
  """Runs `evaluate(state, epoch) -> {name: float}` after every epoch; its
  metrics reach every hook's `after_epoch` (log line, TensorBoard, early
  stopping)."""

  def __init__(self, evaluate: Callable[[TrainState, int], dict[str, float]]):
    self._evaluate = evaluate

  def evaluate(self, state, epoch):
    return self._evaluate(state, epoch)


def default_report(progress: Progress, metrics: dict[str, float]) -> str:
  """`LogLines`' training line: "epoch E step S: name=value ..."."""
  values = " ".join(f"{k}={v:.6g}" for k, v in metrics.items())
  return f"epoch {progress.epoch} step {progress.step}: {values}"


def default_report_eval(epoch: int, metrics: dict[str, float]) -> str:
  """`LogLines`' evaluation line: "epoch E eval: name=value ..."."""
  values = " ".join(f"{k}={v:.6g}" for k, v in metrics.items())
  return f"epoch {epoch} eval: {values}"


class LogLines(Hook):
  """Prints `report(progress, metrics)` every `log_every_steps` steps (the
  metrics' mean since the previous line, or with log_metrics "last" that
  step's), `report_eval(epoch, metrics)` after each evaluation (a None line
  prints nothing) and the loop's messages, above a progress bar on a
  terminal; process 0 only."""

  def __init__(self, report: Callable[[Progress, dict], str | None] = default_report,
               report_eval: Callable[[int, dict], str | None] = default_report_eval):
    self._report, self._report_eval = report, report_eval
    self._window = self._total = self._bar = None

  def start(self, run):
    self._window, self._total = _LogWindow.of(run), run.total_steps

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

  def message(self, line):
    self.print(line)

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
      self._bar = None


class MetricWriter(Hook):
  """TensorBoard scalars in the workdir: train/<metric> every
  `log_every_steps` steps (averaged as the log lines are), eval/<metric>
  after each epoch; written without TensorFlow (`training.tensorboard`). The
  event file only comes at the first write, so a run resumed at its end adds
  no empty one."""

  def __init__(self):
    self._workdir = self._window = self._writer = None

  def start(self, run):
    self._workdir, self._window = run.workdir, _LogWindow.of(run)

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
      self._writer = None


class EarlyStopping(Hook):
  """Keeps the state of the epoch with the lowest `metric` (a key of the
  evaluated metrics, lower is better) in workdir/best; stops when it has not
  improved for `patience` epochs; `end` returns the best state and `log`s
  why.

  The best state is saved before the epoch's regular checkpoint, so after a
  kill the record never lags the checkpoint a run resumes from.
  """

  def __init__(self, metric: str, patience: int,
               log: Callable[[str], None] = print):
    self.metric, self.patience, self._log = metric, patience, log
    self._steps_per_epoch = self._total = None
    self._checkpointer = self._record_path = self.record = None
    self._workdir = None

  def start(self, run):
    self._steps_per_epoch, self._total = run.steps_per_epoch, run.total_steps
    self._workdir = run.workdir

  def begin(self, state, resumed):
    # Only now, after the run identity was checked and the state restored.
    self._checkpointer = Checkpointer(self._workdir / "best", max_to_keep=1)
    self._record_path = self._workdir / "best" / "record.json"
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
    if self._checkpointer is not None:
      self._checkpointer.close()


class StopSignals(Hook):
  """Turns the first SIGINT or SIGTERM (e.g. a pre-empted VM) into a request
  for a checkpoint when the current dispatch ends, then raises `Interrupted`
  once it is saved; a second signal raises SecondSignal, a
  KeyboardInterrupt. Handlers are installed by `begin` (on the main thread
  only) and restored by `close`."""

  _SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self._signum = None
    self._previous = {}

  def begin(self, state, resumed):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self._SIGNALS}

  def _handle(self, signum, frame):
    if self._signum is not None:  # The second one: stop without saving.
      raise SecondSignal(signum)
    self._signum = signum
    print(f"\n{signal.Signals(signum).name}: saving a checkpoint when the "
          "current dispatch of steps ends (again: stop without saving)",
          file=sys.stderr, flush=True)

  def wants_checkpoint(self, step):
    return self._signum is not None

  def after_checkpoint(self, step, directory):
    if self._signum is not None:
      raise Interrupted(step, directory, self._signum)

  def close(self):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}


def standard(config: ml_collections.ConfigDict, *,
             evaluate: Callable[[TrainState, int], dict[str, float]] | None = None,
             report: Callable[[Progress, dict], str | None] = default_report,
             report_eval: Callable[[int, dict], str | None] = default_report_eval,
             identity: dict | None = None) -> list[Hook]:
  """The hooks of a training command: `RunIdentity(identity)`, `RunHistory`,
  `EpochEvaluation(evaluate)` when given, `LogLines(report, report_eval)`,
  `MetricWriter` and, when config.early_stopping_metric is set,
  `EarlyStopping` (its lines printed as the log lines are).

  Raises:
    ConfigError: early_stopping_metric is set but `evaluate` is None.
  """
  log = LogLines(report, report_eval)
  chosen = [RunIdentity(identity), RunHistory()]
  if evaluate is not None:
    chosen.append(EpochEvaluation(evaluate))
  chosen += [log, MetricWriter()]
  if config.get("early_stopping_metric"):
    if evaluate is None:
      raise ConfigError("early_stopping_metric is set but this task evaluates "
                        "nothing; set --config.early_stopping_metric=''")
    chosen.append(EarlyStopping(config.early_stopping_metric,
                                config.get("early_stopping_patience"), log.print))
  return chosen
