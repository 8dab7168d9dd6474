"""Errors that mean the user must change something; entry points print them as
one line (no traceback) and exit non-zero. Also `Interrupted`, a run stopped by
a signal, whose exit code is the shell's 128 + signal number."""

import signal

__all__ = ["first_line", "UserError", "ConfigError", "TrainingDivergedError", "Interrupted",
           "SecondSignal", "require_positive_ints", "check_workdir",
           "require_choice", "require_range", "require_chunks",
           "require_sample_counts"]


class UserError(Exception):
  """Bad input: a config value, a path, a missing dataset. Message says what to do."""


class ConfigError(UserError):
  """A config value that cannot work."""


class TrainingDivergedError(UserError):
  """The loss became NaN or infinite."""


class Interrupted(Exception):
  """SIGINT or SIGTERM stopped training; a checkpoint of `step` was saved first."""

  def __init__(self, step: int, directory, signum: int = signal.SIGINT):
    super().__init__(f"interrupted by {signal.Signals(signum).name}: checkpoint "
                     f"of step {step} saved in {directory}; rerun the same "
                     "command to resume")
    self.step, self.signum = step, signum

  @property
  def exit_code(self) -> int:
    """130 for SIGINT, 143 for SIGTERM, as shells and schedulers expect."""
    return 128 + self.signum


class SecondSignal(KeyboardInterrupt):
  """A second SIGINT or SIGTERM: stop at once, without saving."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum


def first_line(error: Exception) -> str:
  """An exception as one short line ("TypeName: first line of its message"),
  for a UserError that names what went wrong underneath."""
  lines = str(error).strip().splitlines()
  line = lines[0] if lines else ""
  line = line if len(line) <= 160 else line[:157] + "..."
  return f"{type(error).__name__}: {line}" if line else type(error).__name__


def require_positive_ints(config, names, prefix: str = "") -> None:
  """Raises ConfigError naming `--config.<prefix><name>` unless each is an int > 0."""
  for name in names:
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ConfigError(f"{prefix}{name} must be a positive integer, got "
                        f"{value!r}; set --config.{prefix}{name}")


def check_workdir(workdir) -> None:
  """Raises UserError when `workdir` (a Path) exists but is not a directory."""
  if workdir.exists() and not workdir.is_dir():
    raise UserError(f"workdir {workdir} exists and is not a directory; pass "
                    "--workdir=<a new or existing directory>")


def require_choice(config, name: str, choices, prefix: str = "") -> None:
  """Raises ConfigError naming `--config.<prefix><name>` unless its value is
  one of `choices`."""
  value = config[name]
  if value not in choices:
    raise ConfigError(f"{prefix}{name} must be one of {', '.join(choices)}, got "
                      f"{value!r}; set --config.{prefix}{name}")


def require_range(config, name: str, low: float, high: float, prefix: str = "",
                  *, low_open: bool = False, high_open: bool = False) -> None:
  """Raises ConfigError naming `--config.<prefix><name>` unless its value lies
  in the interval from `low` to `high` (ends closed unless `*_open`)."""
  value = config[name]
  above = value > low if low_open else value >= low
  below = value < high if high_open else value <= high
  if not (above and below):
    interval = (f"{'(' if low_open else '['}{low:g}, {high:g}"
                f"{')' if high_open else ']'}")
    raise ConfigError(f"{prefix}{name} must be in {interval}, got {value!r}; "
                      f"set --config.{prefix}{name}")


def require_chunks(config, names, chunk: str = "chunk_size",
                   prefix: str = "eval.") -> None:
  """Raises ConfigError unless each sample count `names` is a multiple of
  `chunk` (or below it: one chunk)."""
  for name in names:
    if config[name] % min(config[chunk], config[name]):
      raise ConfigError(f"{prefix}{name}={config[name]} must be a multiple of "
                        f"{prefix}{chunk}={config[chunk]}")


def require_sample_counts(config, name: str, up_to: str,
                          prefix: str = "eval.") -> None:
  """Raises ConfigError unless `name` is a non-empty list of sample counts in
  1..config[up_to]."""
  counts = tuple(config[name])
  if not counts or min(counts) < 1 or max(counts) > config[up_to]:
    raise ConfigError(f"{prefix}{name} {counts} must be sample counts in "
                      f"1..{prefix}{up_to}={config[up_to]}; set "
                      f"--config.{prefix}{name}")
