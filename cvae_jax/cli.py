"""The command line of every task: absl flags with an ml_collections config,
user errors as one line on stderr, and the exit codes a shell expects.

  python -m train.<task> --config=train/configs/<task>.py --workdir=DIR \
      [--config.batch_size=128 ...]

An entry point, the project's `train/<task>.py` or your own script, is:

  from cvae_jax import cli
  if __name__ == "__main__":
    cli.run("my_package.my_task", "configs/my_task.py")

`--config=PATH` names a Python file whose `get_config()` returns an
ml_collections ConfigDict; `--config.<key>=<value>` overrides any key of it
(dotted for nested keys: `--config.eval.num_samples=10`), parsed as a Python
literal of the key's type; a key the config lacks is refused with the
closest match. Your task module (any importable module) defines `TASK`, a
`cvae_jax.runner.Task`, whose settings `run` checks first
(`cvae_jax.runner.check`: the workdir, `TASK.validate`, the trainer's; it
imports nothing heavy, so a bad value answers in about the time `import jax`
takes), then runs (`TASK.train_and_evaluate`: the runner prints a finished
workdir's figures from results.json with no TensorFlow and no data, trains
or resumes, evaluates, writes results.json). `python -m cvae_jax.evaluate
--workdir=DIR` evaluates a finished run again.

What `run` does, in order: parses the flags (a mistyped key is
`error: unknown config key 'learnin_rate' (did you mean 'learning_rate'?);
the keys are in train/configs/mnist_label.py`), imports the task module,
checks the settings, then runs the task. TensorFlow's C++ logs stay off
stderr unless --verbosity is given. Exit codes: 0 done; 2 a user error
(`error: ...`, no traceback); 130 on SIGINT and 143 on SIGTERM (128 + the
signal: the trainer saves a checkpoint first and raises
`errors.Interrupted`; a second signal stops without saving). `run` also takes
a `train_and_evaluate` callable instead of a module name, without the early
check. tests/test_cli.py checks the bad-value answer before TensorFlow
for every train/*.py, and the rest for mnist_label and mnist_quadrant.
"""

import difflib
import importlib
import importlib.util
import os
import signal
import sys

# jaxlib and TensorFlow read it once, when loaded: C++ INFO and WARNING lines
# (e.g. tf.data's on a corrupt file) stay off stderr unless --verbosity is
# given or the environment sets it.
_QUIET_NATIVE_LOGS = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
if _QUIET_NATIVE_LOGS:
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags, logging
from ml_collections import config_flags

from cvae_jax.data import tf_import
from cvae_jax.errors import Interrupted, UserError

__all__ = ["run", "fail", "unknown_key"]

_OVERRIDE = "--config."


def fail(message: str, code: int = 2, distributed_started: bool = False):
  """Exits with `code` after "error: {message}" on stderr (at once, without
  jax.distributed's shutdown barrier, if `distributed_started`)."""
  print(f"error: {message}", file=sys.stderr)
  if distributed_started:
    # A normal exit would wait (up to 5 min) in jax.distributed's shutdown
    # barrier for processes that may never get there; leaving at once lets
    # them see this one gone (JAX aborts them after its heartbeat timeout).
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def _config_path(argv) -> str | None:
  """The --config=PATH (or --config PATH) in argv, without a `:arg` suffix."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg[len("--config="):].split(":")[0]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1].split(":")[0]
  return None


def _load_config(path: str):
  """get_config() of a config file, or None when it cannot be loaded."""
  try:
    spec = importlib.util.spec_from_file_location("_entry_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
  except Exception:  # pylint: disable=broad-except  # The flag reports it.
    return None


def unknown_key(name: str, config) -> str | None:
  """Why the dotted `name` is not in `config`, or None if it is there."""
  node, parts = config, name.split(".")
  for depth, part in enumerate(parts):
    parent = ".".join(parts[:depth])
    if not hasattr(node, "keys"):  # A value, not a group of keys.
      return f"unknown config key '{name}' ('{parent}' is a value, not a group)"
    if part not in node.keys():
      close = difflib.get_close_matches(part, list(node.keys()), n=1)
      hint = (f" (did you mean '{'.'.join([*parts[:depth], close[0]])}'?)"
              if close else "")
      return f"unknown config key '{'.'.join(parts[:depth + 1])}'{hint}"
    node = node[part]
  return None


def _bad_override_message(argv, default_config: str, error: Exception) -> str:
  """One line for an override that names no config key."""
  config_path = _config_path(argv) or default_config
  config = _load_config(config_path)
  for arg in argv[1:]:
    if arg.startswith(_OVERRIDE) and config is not None:
      reason = unknown_key(arg[len(_OVERRIDE):].split("=")[0], config)
      if reason is not None:
        return f"{reason}; the keys are in {config_path}"
  first_line = str(error).strip("'\"").splitlines()[0].strip("'\"")
  return (f"bad config override ({first_line}); the keys are in "
          f"{config_path}, an override is --config.<key>=<value>")


def _cannot_load(error: Exception, default_config: str) -> str:
  # config_flags explains the first failure on its last lines.
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  return (f"cannot load the --config file ({lines[-1] if lines else error}); "
          f"pass --config=<path to a config .py>, e.g. {default_config}")


def _parse_flags(argv, default_config: str):
  try:
    return flags.FLAGS(argv)
  except (OSError, ImportError, SyntaxError) as e:  # The file, with an override.
    fail(_cannot_load(e, default_config))
  except (KeyError, AttributeError, TypeError) as e:  # An override naming no key.
    fail(_bad_override_message(argv, default_config, e))
  except flags.Error as e:
    fail(f"{e}; see --helpfull")


def run(task, default_config: str) -> None:
  """Defines --config and --workdir, checks them, then runs the task.

  Args:
    task: the name of a module defining `TASK`, e.g.
      "cvae_jax.tasks.mnist_label" (checked before anything imports
      TensorFlow), or a `train_and_evaluate(config, workdir)` callable.
    default_config: the config file a bare --config.<key> override refers to.
  """
  # Overrides such as --config.bogus=1 are matched against a config both when
  # the flag is defined (default config) and when flags are parsed (--config=).
  try:
    config_flag = config_flags.DEFINE_config_file(
        "config", default_config, "Training configuration (a .py file).")
  except (OSError, ImportError, SyntaxError) as e:
    fail(_cannot_load(e, default_config))
  except (KeyError, AttributeError, TypeError) as e:
    fail(_bad_override_message(sys.argv, default_config, e))
  workdir_flag = flags.DEFINE_string(
      "workdir", None, "Checkpoints, TensorBoard logs and results go here; "
      "rerunning with the same workdir resumes.", required=True)
  # Several processes (cvae_jax/distributed.py): all or none.
  coordinator_flag = flags.DEFINE_string(
      "coordinator_address", None, "HOST:PORT of process 0, for a run over "
      "several processes (with --num_processes and --process_id).")
  processes_flag = flags.DEFINE_integer(
      "num_processes", None, "How many processes the run spans.")
  process_id_flag = flags.DEFINE_integer(
      "process_id", None, "This process's index, 0..num_processes-1.")
  distributed_flag = flags.DEFINE_bool(
      "distributed", False, "Start jax.distributed from what the platform "
      "sets (Cloud TPU pods, SLURM): the same command on every host.")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    verbose = flags.FLAGS["verbosity"].present
    if not verbose:  # Library INFO logs and TF's C++ logs: --verbosity=0.
      logging.set_verbosity(logging.WARNING)
    elif _QUIET_NATIVE_LOGS:
      del os.environ["TF_CPP_MIN_LOG_LEVEL"]
    tf_import.show_native_logs(verbose)
    try:
      config = config_flag.value
      config.get("seed")  # Reading it reports a config file that failed to load.
    except (OSError, ImportError, SyntaxError) as e:
      fail(_cannot_load(e, default_config))
    workdir = workdir_flag.value
    from cvae_jax import distributed  # pylint: disable=g-import-not-at-top
    try:
      if distributed.initialize(coordinator_flag.value, processes_flag.value,
                                process_id_flag.value, distributed_flag.value):
        from cvae_jax import sharding  # pylint: disable=g-import-not-at-top
        if not sharding.is_main_process():  # Process 0 speaks; errors still show.
          sys.stdout = open(os.devnull, "w")  # pylint: disable=consider-using-with
      if isinstance(task, str):
        from cvae_jax import runner  # pylint: disable=g-import-not-at-top
        spec = importlib.import_module(task).TASK
        runner.check(spec, config, workdir)
        spec.train_and_evaluate(config, workdir)
      else:
        task(config, workdir)
    except Interrupted as e:
      print(str(e), file=sys.stderr)
      sys.exit(e.exit_code)
    except KeyboardInterrupt as e:  # Before training, or a second signal.
      fail("interrupted; checkpoints already in --workdir are kept, rerun the "
            "same command to resume",
            128 + getattr(e, "signum", signal.SIGINT))
    except UserError as e:
      fail(str(e), distributed_started=distributed.joined())

  app.run(main, flags_parser=lambda argv: _parse_flags(argv, default_config))
