"""What every entry point shares: absl flags with an ml_collections config,
and user errors as one line on stderr with a non-zero exit code.

  python -m train.<task> --config=train/configs/<task>.py --workdir=DIR \
      [--config.batch_size=128 ...]
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cvae_jax.errors import UserError
from cvae_jax.training import Interrupted


def _fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _unknown_key(error: Exception, config_path: str):
  _fail(f"unknown config key {str(error).strip(chr(34))}; the keys are in "
        f"{config_path} (an override is --config.<key>=<value>)")


def _parse_flags(argv, default_config: str):
  try:
    return flags.FLAGS(argv)
  except (KeyError, AttributeError) as e:  # An override naming no config key.
    _unknown_key(e, default_config)
  except flags.Error as e:
    _fail(f"{e}; see --helpfull")


def run(train_and_evaluate, default_config: str) -> None:
  """Defines --config and --workdir, then calls train_and_evaluate(config, workdir)."""
  # Overrides such as --config.bogus=1 are matched against a config both when
  # the flag is defined (default config) and when flags are parsed (--config=).
  try:
    config_flag = config_flags.DEFINE_config_file(
        "config", default_config, "Training configuration (a .py file).")
  except (KeyError, AttributeError) as e:
    _unknown_key(e, default_config)
  workdir_flag = flags.DEFINE_string(
      "workdir", None, "Checkpoints, TensorBoard logs and results go here; "
      "rerunning with the same workdir resumes.", required=True)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:  # Library INFO logs: --verbosity=0.
      logging.set_verbosity(logging.WARNING)
    try:
      config = config_flag.value
      config.get("seed")  # Reading it reports a config file that failed to load.
    except (OSError, ImportError, SyntaxError) as e:
      # config_flags explains the first failure on its last lines.
      lines = [l.strip() for l in str(e).splitlines() if l.strip()]
      _fail(f"cannot load the --config file ({lines[-1]}); pass "
            f"--config=<path to a config .py>, e.g. {default_config}")
    try:
      train_and_evaluate(config, workdir_flag.value)
    except Interrupted as e:
      print(str(e), file=sys.stderr)
      sys.exit(130)
    except KeyboardInterrupt:
      _fail("interrupted; checkpoints already in --workdir are kept, rerun the "
            "same command to resume from the latest", 130)
    except UserError as e:
      _fail(str(e))

  app.run(main, flags_parser=lambda argv: _parse_flags(argv, default_config))
