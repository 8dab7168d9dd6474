"""TensorBoard scalars written without TensorFlow.

An event file is a sequence of TFRecords of `Event` protos; the protos,
the record framing (with its CRC) and the scalar plugin's metadata all come
from the `tensorboard` package, which needs no TensorFlow for them. What
this writes reads back with TensorBoard and `cvae_jax.plotting.read_scalars`
(scalars as float tensors, as `tf.summary.scalar` writes them). Local
directories only; a remote path (gs://...) goes through clu, which imports
TensorFlow.
"""

import socket
import time
from pathlib import Path

import numpy as np

__all__ = ["ScalarWriter"]


class ScalarWriter:
  """write_scalars(step, {tag: value}); the file is opened at the first."""

  def __init__(self, logdir: str | Path):
    self._logdir, self._file, self._remote = str(logdir), None, None
    if "://" in self._logdir:
      from clu import metric_writers  # pylint: disable=g-import-not-at-top
      self._remote = metric_writers.SummaryWriter(self._logdir)

  def _open(self):
    # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter
    Path(self._logdir).mkdir(parents=True, exist_ok=True)
    name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}"
    self._file = RecordWriter(open(Path(self._logdir) / name, "wb"))  # pylint: disable=consider-using-with
    self._file.write(event_pb2.Event(wall_time=time.time(),
                                     file_version="brain.Event:2").SerializeToString())

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    """One TensorBoard point per {tag: value} at `step`."""
    if self._remote is not None:
      self._remote.write_scalars(step, scalars)
      return
    # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.scalar import metadata
    from tensorboard.util import tensor_util
    if self._file is None:
      self._open()
    values = [summary_pb2.Summary.Value(
        tag=tag, tensor=tensor_util.make_tensor_proto(np.float32(value)),
        metadata=metadata.create_summary_metadata(display_name=tag, description=""))
              for tag, value in scalars.items()]
    self._file.write(event_pb2.Event(
        wall_time=time.time(), step=int(step),
        summary=summary_pb2.Summary(value=values)).SerializeToString())

  def flush(self) -> None:
    """Writes what is buffered to the event file."""
    if self._remote is not None:
      self._remote.flush()
    elif self._file is not None:
      self._file.flush()

  def close(self) -> None:
    """Flushes and closes the event file."""
    if self._remote is not None:
      self._remote.close()
    elif self._file is not None:
      self._file.close()
      self._file = None
