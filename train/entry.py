"""What every entry point shares: user errors become one line and an exit code."""

import sys

from cvae_jax.errors import UserError
from cvae_jax.training import Interrupted


def run(train_and_evaluate, config, workdir) -> None:
  try:
    train_and_evaluate(config, workdir)
  except Interrupted as e:
    print(str(e), file=sys.stderr)
    sys.exit(130)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
