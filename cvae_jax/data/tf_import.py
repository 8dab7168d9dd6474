"""TensorFlow and TFDS, imported on first use instead of at module import.

Importing them takes ~4 s, so data modules call `tensorflow()` inside their
functions: an entry point can check its config before paying for it.

The start-up lines TF 2.21 writes to stderr (`All log messages before
absl::InitializeLog()...`, `oneDNN custom operations are on...`), which no
environment variable turns off, are dropped by pointing file descriptor 2 at
/dev/null during the import (Python errors from it still surface), unless
`show_native_logs(True)` was called (entry points do on `--verbosity`). Later
C++ INFO / WARNING lines obey TF_CPP_MIN_LOG_LEVEL, which must be set before
jaxlib is imported: cvae_jax/cli.py does.
"""

import contextlib
import os
import sys

__all__ = ["show_native_logs", "tensorflow"]

_show_native_logs = False
_configured = False


def show_native_logs(show: bool) -> None:
  """Whether the first TensorFlow import may write its C++ logs to stderr."""
  global _show_native_logs
  _show_native_logs = show


@contextlib.contextmanager
def _native_stderr_silenced():
  """fd 2 -> /dev/null (C/C++ writes only; nothing in Python prints here)."""
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def tensorflow():
  """(tensorflow, tensorflow_datasets), imported and configured once: TF is
  kept off any GPU so JAX has its memory (tf.data runs on the host)."""
  global _configured
  if not _configured:
    quiet = "tensorflow" not in sys.modules and not _show_native_logs
    with _native_stderr_silenced() if quiet else contextlib.nullcontext():
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
    tf.config.set_visible_devices([], "GPU")
    _configured = True
  return sys.modules["tensorflow"], sys.modules["tensorflow_datasets"]
