"""TensorFlow and TFDS, imported on first use instead of at module import.

Importing them takes ~4 s, so data modules call `tensorflow()` inside their
functions: an entry point can check its config before paying for it.

TF's C++ logs are kept off stderr unless `show_native_logs(True)` was called
(entry points do on `--verbosity`): the start-up lines of TF 2.21 (`All log
messages before absl::InitializeLog()...`, `oneDNN custom operations are
on...`), which no environment variable turns off, by pointing file descriptor
2 at /dev/null during the import (Python errors from it still surface); later
INFO and WARNING lines (e.g. tf.data's on a corrupt file) by
TF_CPP_MIN_LOG_LEVEL=2 unless the environment sets it.
"""

import contextlib
import os
import sys

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
    if quiet:
      os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_stderr_silenced() if quiet else contextlib.nullcontext():
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
    tf.config.set_visible_devices([], "GPU")
    _configured = True
  return sys.modules["tensorflow"], sys.modules["tensorflow_datasets"]
