"""Orbax checkpoints of the TrainState in `workdir/checkpoints`.

Restoring falls back to the previous checkpoint when the latest cannot be read
(a run killed while writing, a truncated file); the unreadable one is moved to
`workdir/unreadable_checkpoints/` rather than deleted, so nothing is lost.
"""

import shutil
from pathlib import Path
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every call to `save` (the trainer decides when) and keeps the last N."""

  def __init__(self, workdir: str | Path, max_to_keep: int):
    self._workdir = Path(workdir).expanduser().absolute()  # Orbax needs absolute.
    self.directory = self._workdir / "checkpoints"
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
        # A synchronous save is on disk when `save` returns, so SIGKILL right
        # after it cannot lose it; saves are rare enough for this to be cheap.
        enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def save(self, state: Any) -> None:
    step = int(state.step)
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore_latest(self, template: Any) -> Any | None:
    """The newest readable checkpoint, placed like `template`; None if none.

    Args:
      template: a state with the target structure, shapes, dtypes and
        shardings (its values are not used).
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # pylint: disable=broad-except
        moved_to = self._move_aside(step)
        logging.warning("checkpoint %d is unreadable (%s: %s); moved it to %s "
                        "and trying the previous one", step, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else "", moved_to)
        print(f"warning: checkpoint {step} is unreadable; moved it to "
              f"{moved_to} and resuming from the previous one", flush=True)
    return None

  def _move_aside(self, step: int) -> Path:
    target_dir = self._workdir / "unreadable_checkpoints"
    target_dir.mkdir(exist_ok=True)
    target = target_dir / str(step)
    suffix = 0
    while target.exists():
      suffix += 1
      target = target_dir / f"{step}.{suffix}"
    shutil.move(str(self.directory / str(step)), target)
    self._manager.reload()
    return target

  def close(self) -> None:
    self._manager.close()
